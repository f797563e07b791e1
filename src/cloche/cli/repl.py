"""``cloche repl``: Python cells in a sandbox's kernel, typed (or piped) one after another.

Each complete statement (as Python's own prompt decides: a block continues until a blank line) is one cell.
Output streams as it is printed; a cell's value prints as ``Out[n]:``; pictures are saved as files (their
paths printed); installs show on stderr. Variables persist between cells until the session ends.
"""

from __future__ import annotations

import base64
import codeop
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer

from cloche.models_code import CodeOutput, CodeResult
from cloche.sdk.calls import CodeEvent
from cloche.sdk.client import Client

PICTURES = {"png": "png", "jpeg": "jpg", "svg": "svg"}


def cells(lines: Iterator[str], prompt: bool) -> Iterator[str]:
    """Complete cells from input lines: a line that opens a block waits for the block's end (a blank line)."""
    buffer: list[str] = []
    while True:
        if prompt:
            sys.stdout.write("... " if buffer else ">>> ")
            sys.stdout.flush()
        line = next(lines, None)
        if line is None:
            if buffer:
                yield "\n".join(buffer)
            return
        line = line.rstrip("\n")
        if not buffer and not line.strip():
            continue
        buffer.append(line)
        source = "\n".join(buffer)
        try:
            complete = codeop.compile_command(source, "<cell>", "exec") is not None
        except (SyntaxError, ValueError, OverflowError):
            complete = True  # IPython syntax (magics) or a real error: the kernel says which
        if complete and (len(buffer) == 1 or not line.strip()):
            yield source
            buffer = []


def save_pictures(output: CodeOutput, folder: Path, stem: str) -> list[Path]:
    saved = []
    for name, suffix in PICTURES.items():
        data = getattr(output, name)
        if data is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}.{suffix}"
        path.write_bytes(data.encode() if name == "svg" else base64.b64decode(data))
        saved.append(path)
    return saved


def show(events: Iterator[CodeEvent], folder: Path, stem: str, out: TextIO, err: TextIO) -> CodeResult | None:
    """Print a cell's events as they arrive, pictures saved as ``folder/<stem>-<k>.<type>``; returns its result."""
    shown = 0
    for event in events:
        if event.kind in ("stdout", "stderr"):
            (out if event.kind == "stdout" else err).write(event.text)
        elif event.kind == "install" and event.data is not None:
            names = event.data.get("packages") or event.data.get("requested") or []
            err.write(f"cloche: {event.data.get('phase', 'installing')} {', '.join(map(str, names))}\n")
        elif event.output is not None:
            shown += 1
            pictures = save_pictures(event.output, folder, f"{stem}-{shown}")
            for path in pictures:
                out.write(f"[image saved to {path}]\n")
            if event.output.is_main_result and not pictures and event.output.text is not None:
                out.write(f"Out: {event.output.text}\n")
        elif event.result is not None:
            return _ended(event.result, err)
    return None


def _ended(result: CodeResult, err: TextIO) -> CodeResult:
    if result.restarted:
        err.write(f"cloche: the kernel was restarted ({result.restart_reason}); earlier variables are gone\n")
    if result.error is not None:
        err.write(result.error.traceback or f"{result.error.name}: {result.error.value}")
        err.write("\n")
    if result.install is not None and result.install.error:
        err.write(f"cloche: install failed: {result.install.error}\n")
    return result


def repl(
    sandbox: Annotated[str | None, typer.Option(help="Use this sandbox instead of creating one.")] = None,
    keep: Annotated[bool, typer.Option(help="Keep a newly created sandbox when the session ends.")] = False,
    context: Annotated[str | None, typer.Option(help="Run in this context (default: the sandbox's own).")] = None,
    images: Annotated[Path, typer.Option(help="Folder where pictures (charts) are saved.")] = Path("cloche-images"),
    timeout: Annotated[float | None, typer.Option(help="Wall clock per cell, in seconds.")] = None,
) -> None:
    """Run Python cells in a sandbox's persistent kernel: variables stay, imports install, charts become files.

    Type a statement (a block ends with a blank line), or pipe cells in; Ctrl-D ends the session. Exits 1 when
    the last cell failed.
    """
    interactive = sys.stdin.isatty()
    last: CodeResult | None = None
    with Client() as client:
        box = client.sandbox(sandbox) if sandbox else client.create()
        if not sandbox:
            typer.echo(f"cloche: sandbox {box.id} ({'kept' if keep else 'deleted'} when the session ends)", err=True)
        try:
            for number, cell in enumerate(cells(iter(sys.stdin), interactive), start=1):
                events = box.stream_code(cell, context, timeout)
                last = show(events, images, f"cell{number}", sys.stdout, sys.stderr)
        finally:
            if not sandbox and not keep:
                box.delete()
    raise typer.Exit(1 if last is not None and last.status != "ok" else 0)
