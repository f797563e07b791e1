"""``cloche run``'s terminal view: the program's output as it arrives, install progress on stderr.

On a terminal the install step is a spinner naming the packages; elsewhere (pipes, CI logs) it is one plain
line per phase. Program output never mixes with the spinner: the first output line, or the end, stops it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from cloche.models import ExecResult
from cloche.sdk.calls import ExecEvent

MAX_NAMES = 6


def _names(items: object) -> str:
    names = [str(n) for n in items] if isinstance(items, list | tuple) else []
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")


def describe(data: Mapping[str, Any], elapsed: float | None = None) -> str:
    """One human line for an ``install`` event."""
    phase = data.get("phase")
    if phase == "resolving":
        requested = _names(data.get("requested"))
        return f"Resolving dependencies: {requested}" if requested else "Resolving dependencies"
    if phase == "installing":
        return f"Installing {_names(data.get('packages'))}"
    if phase == "installed":
        took = f" in {elapsed:.1f}s" if elapsed is not None else ""
        if data.get("reused"):  # found in the environment store: nothing was installed
            return f"Reused an environment with {_names(data.get('packages')) or 'no packages'}{took}"
        return f"Installed {_names(data.get('packages')) or 'nothing new'}{took}"
    return f"Dependencies: {phase}"


class InstallProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None
        self._started: float | None = None

    def update(self, data: Mapping[str, Any]) -> None:
        if self._started is None:
            self._started = time.monotonic()
        done = data.get("phase") == "installed"
        line = describe(data, time.monotonic() - self._started if done else None)
        if not self.console.is_terminal:
            self.console.print(line)
        elif done:
            self.stop()
            self.console.print(f"[green]✓[/green] {escape(line)}")
        elif self._status is None:
            self._status = self.console.status(escape(line))
            self._status.start()
        else:
            self._status.update(escape(line))

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def notes(result: ExecResult) -> list[str]:
    """What the user should know about the run's dependencies and ending, beyond the program's own output."""
    lines = []
    if result.status == "install_failed":
        error = result.install.error if result.install and result.install.error else result.output
        lines.append(f"install failed:\n{error.rstrip()}")
    for item in result.unlisted_imports:
        hint = f" (add {item.suggested})" if item.suggested else ""
        lines.append(f"note: '{item.module}' is imported but not listed in the manifest{hint}")
    for unresolved in result.unresolved_imports:
        hint = f": {unresolved.hint}" if unresolved.hint else ""
        lines.append(f"note: no known package provides '{unresolved.module}'{hint}")
    if result.egress_denied:
        lines.append(f"note: network access refused to {', '.join(result.egress_denied)}")
    if result.status not in {"succeeded", "failed", "install_failed"}:
        lines.append(f"run {result.run_id} ended: {result.status}")
    return lines


def play(events: Iterable[ExecEvent], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> ExecResult | None:
    """Show a run's events as they come; return its result (None if the stream ended without one)."""
    console = Console(file=err, highlight=False, soft_wrap=True)
    progress = InstallProgress(console)
    result = None
    try:
        for event in events:
            if event.kind == "install" and event.data is not None:
                progress.update(event.data)
                continue
            progress.stop()
            if event.kind in ("stdout", "stderr"):
                stream = out if event.kind == "stdout" else err
                stream.write(event.text)
                stream.flush()
            elif event.result is not None:
                result = event.result
    finally:
        progress.stop()
    if result is not None:
        for line in notes(result):
            console.print(f"cloche: {escape(line)}")
    return result
