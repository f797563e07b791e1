"""Host-side process hygiene: adopt and reap orphaned jail processes, and kill by sandbox uid.

bwrap's in-namespace init outlives the outer bwrap by a moment and is then orphaned. On hosts whose
pid 1 never reaps (minimal containers, VM init shims) those zombies would pile up, so the server makes
itself a child subreaper and reaps them. Every sandbox has its own host uid, so "kill every process of
that uid" is an exact, race-free description of "everything the sandbox left running".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterable
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PROC = Path("/proc")


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _children() -> set[int]:
    pids: set[int] = set()
    for children in PROC.glob("self/task/*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in children.read_text().split())
    return pids


def _state(pid: int) -> str | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def reap_orphans(tracked: Iterable[int]) -> int:
    """Reap zombie children the event loop is not waiting for; returns how many."""
    skip = set(tracked)
    reaped = 0
    for pid in _children() - skip:
        if _state(pid) == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
                reaped += 1
    return reaped


def processes_of_uids(low: int, high: int) -> list[tuple[int, int]]:
    """(pid, real uid) of every process whose real uid is in [low, high)."""
    found: list[tuple[int, int]] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                if low <= uid < high:
                    found.append((int(entry.name), uid))
                break
    return found


def kill_uid_range(low: int, high: int) -> int:
    """SIGKILL every process of the sandbox uid pool; returns how many were signalled."""
    victims = processes_of_uids(low, high)
    for pid, _uid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(victims)
