"""``cloche process``: start, list, read and stop a sandbox's background processes, and print a port's URL."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cloche.sdk.client import Client

process_app = typer.Typer(help="Background processes: servers and workers that outlive one exec.", no_args_is_help=True)
SandboxArg = Annotated[str, typer.Argument(help="Sandbox id (sb_...).")]
ProcessArg = Annotated[str, typer.Argument(help="Process id (rs_...).")]


@process_app.command("start")
def start(
    sandbox: SandboxArg,
    command: Annotated[str, typer.Argument(help="Shell command, run with /bin/sh -c in the workspace.")],
    lifetime: Annotated[float | None, typer.Option(help="Seconds before it is stopped (default: server's).")] = None,
) -> None:
    """Start COMMAND in the background; prints its id (and what was installed for it)."""
    with Client() as client:
        process = client.sandbox(sandbox).start(command, timeout_seconds=lifetime)
    install = process.info.install
    for package in install.installed if install else []:
        typer.echo(f"installed {package.name}=={package.version}", err=True)
    if process.id is None:
        typer.echo(f"cloche: nothing started: {process.info.status}: {process.info.error or ''}", err=True)
        raise typer.Exit(1)
    typer.echo(process.id)


@process_app.command("ls")
def ls(sandbox: SandboxArg) -> None:
    """List the sandbox's background processes with their status and listening ports."""
    with Client() as client:
        for process in client.sandbox(sandbox).processes():
            info = process.info
            ports = ",".join(str(p) for p in info.ports) or "-"
            typer.echo(f"{process.id}  {info.status:9}  ports {ports:12}  {info.command}")


@process_app.command("logs")
def logs(
    sandbox: SandboxArg,
    process_id: ProcessArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the process ends.")] = False,
) -> None:
    """Print what the process printed (stdout to stdout, stderr to stderr)."""
    with Client() as client:
        process = client.sandbox(sandbox).process(process_id)
        if not follow:
            for chunk in process.logs().chunks:
                (sys.stdout if chunk.stream == "stdout" else sys.stderr).write(chunk.text)
            return
        for event in process.follow():
            (sys.stdout if event.kind == "stdout" else sys.stderr).write(event.text)
            (sys.stdout if event.kind == "stdout" else sys.stderr).flush()
        typer.echo(f"cloche: {process_id} {process.info.status}", err=True)


@process_app.command("stop")
def stop(sandbox: SandboxArg, process_id: ProcessArg) -> None:
    """Stop the process (and everything it started) and forget it."""
    with Client() as client:
        info = client.sandbox(sandbox).process(process_id).stop()
    typer.echo(f"{process_id} {info.status}")


@process_app.command("url")
def url(sandbox: SandboxArg, port: Annotated[int, typer.Argument(help="Port the process listens on.")]) -> None:
    """Print the URL where PORT of the sandbox answers (requests need the API key)."""
    with Client() as client:
        typer.echo(client.sandbox(sandbox).url(port))
