"""The cgroup v2 (unified) driver: the run's group is one directory ``<mount>/<parent>/<name>`` with
``memory.max``, ``memory.swap.max``, ``pids.max`` and ``cpu.max``; the controllers are enabled in
``cgroup.subtree_control`` of every group from the mount root down to ``<parent>``."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Final, Literal

from cloche.errors import JailUnavailable
from cloche.jail import cgroup_base
from cloche.jail.cgroup_base import CPU_PERIOD_US, CgroupLimits, Dirs, Freezer, read_int, read_keyed, write


def prepare(mount: Path, parent: str, controllers: AbstractSet[str], how_to_fix: str) -> None:
    """Create ``parent`` below ``mount`` with ``controllers`` enabled for its children: a controller is
    usable in a group only if every ancestor enables it."""
    node = mount
    _enable(node, controllers, how_to_fix)
    for part in parent.split("/"):
        node = node / part
        with contextlib.suppress(FileExistsError):
            cgroup_base.make_group(node)
        _enable(node, controllers, how_to_fix)


def _enable(node: Path, controllers: AbstractSet[str], how_to_fix: str) -> None:
    control = node / "cgroup.subtree_control"
    missing = controllers - set(control.read_text().split())
    if not missing:
        return
    try:
        write(control, " ".join(f"+{c}" for c in sorted(missing)))
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EBUSY:
            hint = (
                f" {node} holds processes, and v2 enables controllers only for groups without "
                "(no internal processes): move them into a leaf group, or choose a parent elsewhere."
            )
        raise JailUnavailable(f"cannot enable {sorted(missing)} in {control}: {exc}.{hint} {how_to_fix}") from exc


class CgroupV2:
    version: Literal[1, 2] = 2
    join_file = "cgroup.procs"  # "cgroup.threads" moves threads only inside threaded subtrees

    def set_limits(self, dirs: Dirs, limits: CgroupLimits) -> None:
        path = dirs["memory"]
        write(path / "memory.max", limits.memory_bytes)
        # memory.max bounds RAM only; swap is capped separately. The file is absent when the kernel does
        # not account swap (swapaccount=0): then a run on a host with swap can spill past memory.max.
        if (path / "memory.swap.max").exists():
            write(path / "memory.swap.max", 0)
        write(path / "pids.max", limits.pids_max)
        if "cpu" in dirs:
            write(path / "cpu.max", f"{limits.cpu_quota_us} {CPU_PERIOD_US}")

    def oom_killed(self, dirs: Dirs) -> bool:
        return read_keyed(dirs["memory"] / "memory.events").get("oom_kill", 0) > 0

    def memory_peak_bytes(self, dirs: Dirs) -> int | None:
        return read_int(dirs["memory"] / "memory.peak")  # absent before Linux 5.19

    def cpu_usage_seconds(self, dirs: Dirs) -> float | None:
        usec = read_keyed(dirs["memory"] / "cpu.stat").get("usage_usec")
        return None if usec is None else usec / 1e6

    def kill_at_once(self, dirs: Dirs) -> bool:
        kill_file = dirs["memory"] / "cgroup.kill"
        if not kill_file.exists():  # before Linux 5.14
            return False
        with contextlib.suppress(FileNotFoundError):
            write(kill_file, 1)  # one atomic write, no pid races
        return True

    def freezer(self, dirs: Dirs) -> Freezer | None:
        path = dirs["memory"]
        return Freezer(path / "cgroup.freeze", "1", "0", path / "cgroup.events", "frozen 1")


DRIVER: Final = CgroupV2()
