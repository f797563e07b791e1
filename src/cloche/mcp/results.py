"""What the MCP tools return: small, flat models a model can read at a glance (and clients get as structured
content). Built from the SDK's wire models; nothing here talks to the server."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, Field

from cloche.models import ExecResult, FileEntry, FileList, ImportSuggestion, Sandbox, UnresolvedImport
from cloche.models_code import CodeError, CodeResult

MAX_OUTPUT_CHARS = 40_000  # per exec result handed to the model: head and tail are kept
MAX_READ_BYTES = 256 * 1024
MAX_LISTED = 500


class SandboxInfo(BaseModel):
    sandbox_id: str = Field(description="Pass this to every other tool.")
    language: str | None = Field(description="The sandbox's language; null until the first file run decides it.")
    expires_at: str | None = Field(description="When the sandbox is deleted if left idle (UTC); null: never.")


class FileInfo(BaseModel):
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int


class FileListing(BaseModel):
    path: str
    files: list[FileInfo]
    truncated: bool = Field(False, description=f"True when more than {MAX_LISTED} entries exist below the path.")


class FileContent(BaseModel):
    path: str
    size: int
    encoding: Literal["utf-8", "base64"] = Field(description="base64 when the file is not UTF-8 text.")
    content: str


class ExecOutcome(BaseModel):
    run_id: str = Field(description="Id of this run (for get_sbom).")
    status: str = Field(
        description="succeeded, failed (non-zero exit), timed_out, output_limit, oom_killed, install_failed, killed."
    )
    exit_code: int | None = Field(description="The program's exit code; null when cloche stopped it.")
    output: str = Field(description="stdout and stderr interleaved, as a terminal shows them.")
    output_clipped: bool = Field(description=f"True when the middle of a long output (> {MAX_OUTPUT_CHARS}) was cut.")
    truncated: bool = Field(description="True when the program hit the server's output cap and was stopped.")
    duration_ms: int
    installed: list[str] = Field(description="Packages this run installed first, as name==version.")
    dependency_source: str | None = Field(
        description="Where the needs came from: requirements.txt, pyproject.toml, inline, scan (imports), ..."
    )
    install_error: str | None = Field(description="Why installing dependencies failed (status install_failed).")
    unlisted_imports: list[ImportSuggestion] = Field(
        description="Imported but missing from the manifest, so NOT installed: add them to the manifest."
    )
    unresolved_imports: list[UnresolvedImport] = Field(
        description="Imports no known package provides (not installed): a typo, or a local module not uploaded."
    )
    egress_denied: list[str] = Field(description="Hosts the program tried to reach and was refused.")


def sandbox_info(sandbox: Sandbox) -> SandboxInfo:
    expires = sandbox.expires_at.isoformat(timespec="seconds") if sandbox.expires_at else None
    return SandboxInfo(sandbox_id=sandbox.id, language=sandbox.language, expires_at=expires)


def file_info(entry: FileEntry) -> FileInfo:
    return FileInfo(path=entry.path, type=entry.type, size=entry.size)


def file_listing(listing: FileList) -> FileListing:
    files = [file_info(entry) for entry in listing.files[:MAX_LISTED]]
    return FileListing(path=listing.path, files=files, truncated=len(listing.files) > MAX_LISTED)


def file_content(path: str, data: bytes) -> FileContent:
    try:
        return FileContent(path=path, size=len(data), encoding="utf-8", content=data.decode("utf-8"))
    except UnicodeDecodeError:
        return FileContent(path=path, size=len(data), encoding="base64", content=base64.b64encode(data).decode())


def clip(text: str, limit: int = MAX_OUTPUT_CHARS) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n... [{cut} characters cut] ...\n{text[-half:]}", True


def exec_outcome(result: ExecResult) -> ExecOutcome:
    output, clipped = clip(result.output)
    install = result.install
    return ExecOutcome(
        run_id=result.run_id,
        status=result.status,
        exit_code=result.exit_code,
        output=output,
        output_clipped=clipped,
        truncated=result.truncated,
        duration_ms=result.duration_ms,
        installed=[f"{p.name}=={p.version}" for p in install.installed] if install else [],
        dependency_source=install.source if install else None,
        install_error=install.error if install else None,
        unlisted_imports=result.unlisted_imports,
        unresolved_imports=result.unresolved_imports,
        egress_denied=result.egress_denied,
    )


class CodeValue(BaseModel):
    text: str | None = Field(description="The value as text (text/plain).")
    html: str | None = Field(None, description="Its HTML (a DataFrame's table), clipped when long.")
    formats: list[str] = Field(description="Every representation the kernel gave: text, html, png, svg, json, ...")
    image: int | None = Field(None, description="Which image content block (0-based) shows it, if it is a picture.")
    is_main_result: bool = Field(description="True for the cell's last expression; false for values it displayed.")


class CodeOutcome(BaseModel):
    context_id: str = Field(description="The context the cell ran in (pass it again to keep using it).")
    status: str = Field(description="ok, error, timed_out (interrupted; state kept), crashed, install_failed.")
    execution_count: int | None
    stdout: str
    stderr: str
    results: list[CodeValue] = Field(description="Displayed values; pictures come as image content blocks too.")
    error: CodeError | None = Field(description="The exception the cell raised, with its traceback.")
    installed: list[str] = Field(description="Packages installed first for the cell's imports, as name==version.")
    install_error: str | None = Field(description="Why installing the cell's imports failed.")
    restarted: bool = Field(description="True when the kernel was restarted first: earlier variables are gone.")
    restart_reason: str | None
    output_clipped: bool = Field(
        description=f"True when the middle of a long stdout/stderr (> {MAX_OUTPUT_CHARS}) was cut."
    )
    duration_ms: int


def code_outcome(result: CodeResult) -> tuple[CodeOutcome, list[tuple[str, str]]]:
    """The outcome a model reads, and the pictures (base64, MIME type) to hand over as image content."""
    images: list[tuple[str, str]] = []
    values = []
    for found in result.results:
        picture = found.png or found.jpeg
        image = None
        if picture is not None:
            image = len(images)
            images.append((picture, "image/png" if found.png else "image/jpeg"))
        html = clip(found.html, MAX_OUTPUT_CHARS // 4)[0] if found.html else None
        values.append(
            CodeValue(
                text=found.text, html=html, formats=found.formats(), image=image, is_main_result=found.is_main_result
            )
        )
    stdout, cut_out = clip(result.stdout)
    stderr, cut_err = clip(result.stderr)
    install = result.install
    outcome = CodeOutcome(
        context_id=result.context_id,
        status=result.status,
        execution_count=result.execution_count,
        stdout=stdout,
        stderr=stderr,
        results=values,
        error=result.error,
        installed=[f"{p.name}=={p.version}" for p in install.installed] if install else [],
        install_error=install.error if install else None,
        restarted=result.restarted,
        restart_reason=result.restart_reason,
        output_clipped=cut_out or cut_err,
        duration_ms=result.duration_ms,
    )
    return outcome, images
