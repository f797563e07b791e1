"""``cloche logs``, ``cloche sbom``, ``cloche diff``: what a sandbox's runs printed and ran with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cloche.sdk.client import Client

SandboxArg = Annotated[str, typer.Argument(help="Sandbox id (sb_...).")]


def logs(
    sandbox: SandboxArg,
    run: Annotated[str | None, typer.Option("--run", help="Print this run's output instead of the list.")] = None,
    limit: Annotated[int, typer.Option(help="How many runs to list, newest first.")] = 20,
) -> None:
    """List a sandbox's runs, or print one run's output (--run)."""
    with Client() as client:
        box = client.sandbox(sandbox)
        if run is not None:
            record = box.run(run)
            typer.echo(record.output, nl=False)
            ended = f"exit {record.exit_code}" if record.exit_code is not None else record.status
            typer.echo(f"cloche: {record.run_id} {record.status} ({ended}, {record.duration_ms} ms)", err=True)
            return
        runs = box.runs(limit).runs
        if not runs:
            typer.echo(f"no runs in {sandbox}", err=True)
        for item in runs:
            started = item.started_at.isoformat(timespec="seconds")
            code = "-" if item.exit_code is None else str(item.exit_code)
            argv = " ".join(item.argv)
            typer.echo(f"{item.run_id}  {started}  {item.status:14} {code:>4} {item.duration_ms:>7} ms  {argv}")


def sbom(sandbox: SandboxArg, run: Annotated[str, typer.Argument(help="Run id (run_...).")]) -> None:
    """Print a run's CycloneDX SBOM (JSON)."""
    with Client() as client:
        typer.echo(json.dumps(client.sandbox(sandbox).sbom(run), indent=2))


def _version(item: Mapping[str, Any]) -> str:
    license_ = f" ({item['license']})" if item.get("license") else ""
    return f"{item.get('name')} {item.get('version')}{license_}"


def diff_lines(changes: Mapping[str, Any]) -> list[str]:
    """The dependency diff as readable lines: + added, - removed, ~ version changed, ! license changed."""
    lines = [f"+ {_version(item)}" for item in changes.get("added", [])]
    lines += [f"- {_version(item)}" for item in changes.get("removed", [])]
    lines += [f"~ {c.get('name')} {c.get('from_version')} -> {c.get('to_version')}" for c in changes.get("changed", [])]
    lines += [
        f"! {c.get('name')} license {c.get('from') or 'none'} -> {c.get('to') or 'none'}"
        for c in changes.get("license_changed", [])
    ]
    return lines


def diff(
    sandbox: SandboxArg,
    run_from: Annotated[str, typer.Argument(help="Earlier run id.")],
    run_to: Annotated[str, typer.Argument(help="Later run id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
) -> None:
    """Show how dependencies changed between two runs: added, removed, upgraded, relicensed."""
    with Client() as client:
        changes = client.sandbox(sandbox).diff(run_from, run_to)
    if as_json:
        typer.echo(json.dumps(changes, indent=2))
        return
    lines = diff_lines(changes)
    typer.echo(f"dependencies {run_from} -> {run_to}: " + (f"{len(lines)} change(s)" if lines else "no changes"))
    for line in lines:
        typer.echo(line)
