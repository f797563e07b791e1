"""What the two cgroup drivers (``cgroup_v1.py``, ``cgroup_v2.py``) share: the limits of one run, the small
interface each driver fills, and raw access to cgroupfs control files."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

from cloche.errors import InvalidRequest

CPU_PERIOD_US: Final = 100_000
MIN_CPU_QUOTA_US: Final = 1_000  # the kernel refuses smaller quotas
REQUIRED: Final = frozenset({"memory", "pids"})  # a host without both cannot bound a run

Dirs = Mapping[str, Path]
"""Controller -> the run's directory in that controller's hierarchy (v2: the same one for all)."""


@dataclass(frozen=True)
class CgroupLimits:
    """What one run's group enforces: memory (RAM and swap together), processes and threads, CPU cores."""

    memory_bytes: int
    pids_max: int
    cpu_cores: float

    def __post_init__(self) -> None:
        for name, value in (
            ("memory_bytes", self.memory_bytes),
            ("pids_max", self.pids_max),
            ("cpu_cores", self.cpu_cores),
        ):
            if not (math.isfinite(value) and value > 0):
                raise InvalidRequest(f"{name} must be a positive number, got {value}")

    @property
    def cpu_quota_us(self) -> int:
        return max(MIN_CPU_QUOTA_US, round(self.cpu_cores * CPU_PERIOD_US))


@dataclass(frozen=True)
class Freezer:
    """How to freeze a group: write ``frozen`` (later ``thawed``) to ``control``; done once ``state``
    contains ``marker``."""

    control: Path
    frozen: str
    thawed: str
    state: Path
    marker: str


class CgroupDriver(Protocol):
    """One cgroup layout. Everything else (creating, attaching, killing, removing) is the same for both."""

    version: Literal[1, 2]
    join_file: str  # the file a process writes "0" to, to move itself into the group (RunCgroup.preexec_attach)

    def set_limits(self, dirs: Dirs, limits: CgroupLimits) -> None:
        """Write memory (swap included where accounted), pids and CPU limits into a new group."""

    def oom_killed(self, dirs: Dirs) -> bool:
        """Whether the kernel OOM-killed a process of the group (for its memory limit or host-wide)."""

    def memory_peak_bytes(self, dirs: Dirs) -> int | None:
        """The group's highest memory use; None where the kernel does not track it."""

    def cpu_usage_seconds(self, dirs: Dirs) -> float | None:
        """CPU time (user + system) the group used so far; None where it is not accounted."""

    def kill_at_once(self, dirs: Dirs) -> bool:
        """Kill every process of the group with one write, if the kernel can; False if it cannot."""

    def freezer(self, dirs: Dirs) -> Freezer | None:
        """How to freeze the group, or None without a freezer."""


def make_group(path: Path) -> None:
    """Create one group; the kernel fills in its control files (tests swap in a fake that does too)."""
    path.mkdir()


def write(path: Path, value: str | int) -> None:
    # No O_CREAT: a missing control file must fail as "not found", not as an odd EACCES from kernfs.
    # (O_TRUNC is what a shell's ">" sends too; cgroupfs ignores it.)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def read_keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (memory.events, memory.oom_control, cpu.stat); {} when the file is absent."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split() for line in lines)
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
