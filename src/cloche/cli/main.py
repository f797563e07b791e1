"""``cloche``: serve the API, run files in a sandbox, manage sandboxes."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import ValidationError

from cloche.cli import repl, runs
from cloche.cli.failures import CANNOT_START, FAILED, USAGE, describe, fail, invalid_settings, unreachable
from cloche.cli.processes import process_app
from cloche.errors import ClocheError
from cloche.sdk.client import Client, ClocheAPIError

app = typer.Typer(help="cloche: sandboxes for AI-generated code.", no_args_is_help=True, add_completion=False)
sandbox_app = typer.Typer(help="Manage sandboxes.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(process_app, name="process")
audit_app = typer.Typer(help="Check and export the hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="State directory (CLOCHE_DATA_DIR).")]


def _data_dir(data_dir: Path | None) -> Path:
    """The data dir of an existing server; anything else (a typo, an empty folder) ends the command."""
    from cloche.paths import DataPaths
    from cloche.settings import Settings

    root = Settings(**({"data_dir": data_dir} if data_dir else {})).data_dir  # type: ignore[arg-type]
    paths = DataPaths(root)
    if not paths.db.is_file() and not paths.workspaces.is_dir():  # a node on PostgreSQL has no cloche.db
        fail(f"no cloche data in {root} (no cloche.db there): pass the server's --data-dir or set CLOCHE_DATA_DIR")
    return root


@audit_app.command("verify")
def audit_verify(data_dir: DataDir = None) -> None:
    """Check every record's hash and link; exit 1 naming the first bad record."""
    from cloche.store.audit_log import verify

    result = verify(_data_dir(data_dir))
    if result.ok:
        typer.echo(f"ok: {result.records} records, head {result.head}")
        return
    typer.echo(f"audit log is NOT intact: record {result.first_bad}: {result.reason}", err=True)
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(sandbox_id: Annotated[str, typer.Argument(help="Sandbox id.")], data_dir: DataDir = None) -> None:
    """Print one sandbox's audit records (JSON Lines, in order)."""
    import json

    from cloche.store.audit_log import export

    for record in export(_data_dir(data_dir), sandbox_id):
        typer.echo(json.dumps(record, separators=(",", ":")))


SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache"}


Host = Annotated[str | None, typer.Option(help="Bind address (CLOCHE_HOST).")]
Port = Annotated[int | None, typer.Option(help="TCP port (CLOCHE_PORT).")]
StateDir = Annotated[Path | None, typer.Option(help="State directory (CLOCHE_DATA_DIR).")]


@app.command()
def serve(
    host: Host = None,
    port: Port = None,
    data_dir: StateDir = None,
    node_agent: Annotated[
        bool,
        typer.Option(
            "--agent", help="Serve this host's sandboxes to API servers over the node agent protocol instead."
        ),
    ] = False,
) -> None:
    """Start the HTTP server (or, with --agent, a node agent)."""
    import uvicorn

    from cloche.api.app import create_app
    from cloche.logs import configure_logging
    from cloche.settings import Settings

    options = {"host": host, "port": port, "data_dir": data_dir}
    settings = Settings(**{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]
    if node_agent and settings.agent_token is None and not _is_loopback(settings.host):
        fail(f"refusing to bind {settings.host} without CLOCHE_AGENT_TOKEN, or bind 127.0.0.1", USAGE)
    if not node_agent and not settings.parsed_api_keys() and not _is_loopback(settings.host):
        typer.echo(
            f"refusing to bind {settings.host} without API keys: set CLOCHE_API_KEYS "
            "(or CLOCHE_API_KEYS_FILE) or bind 127.0.0.1",
            err=True,
        )
        raise typer.Exit(2)
    configure_logging()
    try:
        app = create_app(settings, node_agent=node_agent)
        if not app.state.cloche.routes_to_agents:
            asyncio.run(app.state.cloche.check_host())  # no jail, no server: refuse before listening
    except (ClocheError, OSError) as exc:  # the checks' hint, or the data dir the OS refused
        reason = exc.message if isinstance(exc, ClocheError) else str(exc)
        fail(f"cannot start: {' '.join(reason.split())}", CANNOT_START)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)


@app.command()
def gc(
    data_dir: DataDir = None,
    grace_seconds: Annotated[
        float | None, typer.Option(help="Keep unreferenced environments younger than this (default: setting).")
    ] = None,
) -> None:
    """Remove environments no live sandbox references (after the grace period)."""
    from cloche.paths import DataPaths
    from cloche.settings import Settings
    from cloche.store.envstore import EnvironmentStore
    from cloche.store.open_store import open_metadata_store

    paths = DataPaths(_data_dir(data_dir))
    settings = Settings(data_dir=paths.root)
    store = open_metadata_store(settings, paths)
    try:
        grace = settings.env_gc_grace_seconds if grace_seconds is None else grace_seconds
        removed = EnvironmentStore(paths.envs).prune(store.bound_env_keys(), grace)
    finally:
        store.close()
    for key in removed:
        typer.echo(f"removed {key}")
    typer.echo(f"{len(removed)} environment(s) removed")


def _is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def _pack(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory)
            if any(part in SKIP_DIRS for part in rel.parts) or path.is_symlink() or not path.is_file():
                continue
            tar.add(path, arcname=str(rel), recursive=False)
    return buffer.getvalue()


@app.command()
def run(
    file: Annotated[str, typer.Argument(help="Entry file, relative to --dir.")],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments for the program.")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Folder uploaded as the workspace.")] = Path("."),
    sandbox: Annotated[str | None, typer.Option(help="Reuse this sandbox instead of creating one.")] = None,
    keep: Annotated[bool, typer.Option(help="Keep a newly created sandbox after the run.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Wall clock in seconds.")] = None,
) -> None:
    """Upload a folder, run FILE in a sandbox, stream its output, and exit with its exit code.

    Dependency installs show on stderr while they happen; the program's output streams as it is printed.
    A new sandbox is deleted after the run unless --keep is given.
    """
    from cloche.cli.progress import play

    if not directory.is_dir():
        fail(f"--dir {directory}: no such folder")
    if sandbox is None and not (directory / file).is_file():
        fail(f"{file}: no such file in {directory}")
    with Client() as client:
        box = client.sandbox(sandbox) if sandbox else client.create()
        if not sandbox:
            ending = "kept after the run" if keep else "deleted after the run; --keep keeps it"
            typer.echo(f"cloche: sandbox {box.id} ({ending})", err=True)
        try:
            box.upload_archive(_pack(directory))
            result = play(box.stream(filename=file, args=args or [], timeout_seconds=timeout))
        finally:
            if not sandbox and not keep:
                box.delete()
        if not sandbox and keep:
            typer.echo(f"cloche: kept sandbox {box.id}; reuse it with --sandbox {box.id}", err=True)
    raise typer.Exit(result.exit_code if result is not None and result.exit_code is not None else 1)


@sandbox_app.command("ls")
def sandbox_ls() -> None:
    """List your sandboxes."""
    with Client() as client:
        for box in client.list():
            expires = box.expires_at.isoformat(timespec="seconds") if box.expires_at else "never"
            typer.echo(f"{box.id}  {box.language or '-':7}  {box.status:8}  expires {expires}")


@sandbox_app.command("rm")
def sandbox_rm(sandbox_ids: Annotated[list[str], typer.Argument(help="Sandboxes to delete.")]) -> None:
    """Delete sandboxes (workspace included)."""
    with Client() as client:
        failed = False
        for sandbox_id in sandbox_ids:
            try:
                client.request("DELETE", f"/v1/sandboxes/{sandbox_id}")
                typer.echo(f"deleted {sandbox_id}")
            except ClocheAPIError as exc:
                if exc.status == 401:
                    raise  # the same for every id
                typer.echo(f"cloche: {describe(exc)}", err=True)
                failed = True
        if failed:
            raise typer.Exit(1)


app.command("logs")(runs.logs)
app.command("sbom")(runs.sbom)
app.command("diff")(runs.diff)
app.command("repl")(repl.repl)


@app.command("mcp")
def mcp_server(
    url: Annotated[str | None, typer.Option(help="cloche server to use (CLOCHE_URL).")] = None,
) -> None:
    """Serve cloche's tools to an AI agent over MCP (stdio); sandboxes live on the server at CLOCHE_URL."""
    from cloche.mcp.server import build_server

    build_server(url=url).run("stdio")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except ClocheAPIError as exc:  # any command: the server refused
        typer.echo(f"cloche: {describe(exc)}", err=True)
        raise SystemExit(FAILED) from None
    except httpx.TransportError as exc:  # any command: no server answered
        typer.echo(f"cloche: {unreachable(exc)}", err=True)
        raise SystemExit(FAILED) from None
    except ValidationError as exc:  # CLOCHE_* variables or flags that do not parse
        typer.echo(f"cloche: {invalid_settings(exc)}", err=True)
        raise SystemExit(USAGE) from None
