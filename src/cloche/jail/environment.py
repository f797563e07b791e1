"""The jail's environment: cleared, then exactly the base variables plus what the run asks for, and its
working directory. Nothing from the server's own environment reaches the jail."""

from __future__ import annotations

from cloche.jail.bwrap import BwrapCommand
from cloche.jail.profile import RunSpec

BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
    # Unbuffered output so streaming shows lines as they are printed.
    "PYTHONUNBUFFERED": "1",
    # No __pycache__ in workspaces: agents rewrite files within a second at equal size, which mtime-based
    # .pyc validation cannot tell apart. Installed environments ship their bytecode precompiled.
    "PYTHONDONTWRITEBYTECODE": "1",
}


def variables(spec: RunSpec) -> dict[str, str]:
    """Every variable the run gets: the base ones, then the run's own over them."""
    return {**BASE_ENV, **spec.env}


def apply(cmd: BwrapCommand, spec: RunSpec) -> None:
    cmd.env = variables(spec)  # bwrap gets --clearenv first (BwrapCommand.argv)
    cmd.args += ["--chdir", spec.cwd]
