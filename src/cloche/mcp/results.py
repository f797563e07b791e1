"""What the MCP tools return: small, flat models a model can read at a glance (and clients get as structured
content). Built from the SDK's wire models; nothing here talks to the server."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, Field

from cloche.models import ExecResult, FileEntry, FileList, ImportSuggestion, Sandbox, UnresolvedImport

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
