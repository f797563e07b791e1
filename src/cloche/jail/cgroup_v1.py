"""The cgroup v1 driver: one hierarchy per controller (memory, pids, and cpu, cpuacct, freezer where
mounted), the run's group at ``<hierarchy mount>/<parent>/<name>`` in each."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from cloche.jail.cgroup_base import CPU_PERIOD_US, REQUIRED, CgroupLimits, Dirs, Freezer, read_int, read_keyed, write

log = logging.getLogger("cloche.jail.cgroups")

CONTROLLERS: Final = ("memory", "pids", "cpu", "cpuacct", "freezer")


def prepare(hierarchies: Mapping[str, Path], parent: str) -> dict[str, Path]:
    """Create ``parent`` in each hierarchy; an optional one (cpu, cpuacct, freezer) that refuses is
    dropped with a warning, a required one (memory, pids) raises."""
    dirs: dict[str, Path] = {}
    for controller, mount in hierarchies.items():
        try:
            (mount / parent).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if controller in REQUIRED:
                raise
            log.warning("cgroup v1 %s hierarchy unusable, going without it: %s", controller, exc)
            continue
        dirs[controller] = mount / parent
    return dirs


class CgroupV1:
    version: Literal[1, 2] = 1
    # A single-threaded process moving itself through "tasks" skips the kernel's threadgroup lock, whose write
    # side waits for an RCU grace period (5-15 ms per run; 0.2 ms this way). Every joiner is one: the spawn
    # helper, a preexec_fn child.
    join_file = "tasks"

    def set_limits(self, dirs: Dirs, limits: CgroupLimits) -> None:
        memory = dirs["memory"]
        write(memory / "memory.limit_in_bytes", limits.memory_bytes)  # before memsw: memsw >= limit
        if (memory / "memory.memsw.limit_in_bytes").exists():
            write(memory / "memory.memsw.limit_in_bytes", limits.memory_bytes)  # swap counts too
        else:
            write(memory / "memory.swappiness", 0)  # no swap accounting: keep the run out of swap
        write(dirs["pids"] / "pids.max", limits.pids_max)
        if "cpu" in dirs:
            write(dirs["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
            write(dirs["cpu"] / "cpu.cfs_quota_us", limits.cpu_quota_us)

    def oom_killed(self, dirs: Dirs) -> bool:
        memory = dirs["memory"]
        control = read_keyed(memory / "memory.oom_control")
        if "oom_kill" in control:  # v1 reports the count since Linux 4.13
            return control["oom_kill"] > 0
        # Older kernels: the limit was hit and usage peaked at it. A guess (reclaim also fails at times).
        failcnt = read_int(memory / "memory.failcnt") or 0
        peak, limit = read_int(memory / "memory.max_usage_in_bytes"), read_int(memory / "memory.limit_in_bytes")
        near_limit = peak is not None and limit is not None and peak >= limit - (1 << 20)
        return control.get("under_oom", 0) > 0 or (failcnt > 0 and near_limit)

    def memory_peak_bytes(self, dirs: Dirs) -> int | None:
        return read_int(dirs["memory"] / "memory.max_usage_in_bytes")

    def cpu_usage_seconds(self, dirs: Dirs) -> float | None:
        if "cpuacct" not in dirs:
            return None
        nsec = read_int(dirs["cpuacct"] / "cpuacct.usage")
        return None if nsec is None else nsec / 1e9

    def kill_at_once(self, dirs: Dirs) -> bool:
        return False  # v1 has no cgroup.kill

    def freezer(self, dirs: Dirs) -> Freezer | None:
        if "freezer" not in dirs:
            return None
        state = dirs["freezer"] / "freezer.state"
        return Freezer(state, "FROZEN", "THAWED", state, "FROZEN")


DRIVER: Final = CgroupV1()
