"""Host side of a run's virtual X display (see display_jail.py, which runs in the jail)."""

from __future__ import annotations

from pathlib import Path

JAIL_SCRIPT = Path(__file__).with_name("display_jail.py")
JAIL_SOURCE = JAIL_SCRIPT.read_text()  # read once: it rides on the argv of every run with a display
MARKER = ".cloche-display"  # in a built environment: its imports need a display (written after verification)


def wrap(argv: tuple[str, ...]) -> tuple[str, ...]:
    """``argv`` started with a display of its own; the launcher is passed inline, so nothing is mounted for it."""
    return ("/usr/bin/python3", "-I", "-c", JAIL_SOURCE, "--", *argv)


def needed(environment: Path) -> bool:
    return (environment / MARKER).is_file()
