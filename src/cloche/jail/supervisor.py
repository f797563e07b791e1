"""Host-side process hygiene: adopt and reap orphaned jail processes, and kill by sandbox uid.

bwrap's in-namespace init outlives the outer bwrap by a moment and is then orphaned. On hosts whose
pid 1 never reaps (minimal containers, VM init shims) those zombies would pile up, so the server makes
itself a child subreaper and reaps them. Every sandbox has its own host uid, so "kill every process of
that uid" is an exact, race-free description of "everything the sandbox left running".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from collections.abc import Awaitable, Iterable
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


class Children:
    """The jail processes the event loop is waiting for; every other child the server adopted is reaped. One per
    server, shared by every isolation tier."""

    def __init__(self) -> None:
        self._live: set[int] = set()
        # Spawns whose pid is not known yet: a child that exits in that window must be left to asyncio's
        # watcher, so no orphan reaping happens while any spawn is in flight.
        self._spawning = 0
        become_subreaper()

    def reap(self) -> int:
        """Reap jail inits orphaned by finished runs (also called periodically by the server)."""
        if self._spawning:
            return 0
        return reap_orphans(self._live)

    async def track(self, spawning: Awaitable[asyncio.subprocess.Process]) -> asyncio.subprocess.Process:
        """Await a tier's spawn; its process is waited for by the event loop, never reaped here."""
        self._spawning += 1
        try:
            proc = await spawning
            self._live.add(proc.pid)
        finally:
            self._spawning -= 1
        return proc

    def done(self, pid: int) -> None:
        """The run of ``pid`` has been waited for: its orphans may be reaped from now on."""
        self._live.discard(pid)
        self.reap()
