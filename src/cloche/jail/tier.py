"""The seam between the runner and an isolation tier: the ``Jail`` protocol and what a started jail hands back.

A tier turns one ``RunSpec`` in one ``JailProfile`` into a confined, running process tree, applying its own
layers as a numbered checklist and spawning the result. Two tiers exist:

* ``bwrap`` (``bwrap_jail.py``): namespaces, mounts and a seccomp filter around code on the host kernel.
* ``gvisor`` (``gvisor_jail.py``): the same view of the system, but every system call is served by gVisor's
  kernel (runsc), so a host kernel bug is no longer one step away.

What is the same for both lives in the runner: the run's cgroup (created before the tier starts, joined by
the spawned child before it execs), the output capture under caps, the wall clock, the kill and the OOM report.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cloche.jail.profile import ISOLATIONS, Isolation, JailProfile, ResourceLimits, RunSpec

if TYPE_CHECKING:
    from cloche.jail.cgroups import RunCgroup
    from cloche.jail.egress_layer import EgressHost, EgressSession
    from cloche.jail.supervisor import Children

__all__ = ["ISOLATIONS", "Isolation", "Jail", "Started", "TierHost"]


@dataclass(frozen=True)
class TierHost:
    """What every tier is built with, the same for all of them on one server: the supervisor its spawned trees
    are tracked by, the synthetic /etc every jail sees, the uid the code has inside, and the egress host (the
    proxy side of the network layer)."""

    children: Children
    synthetic_etc: Path
    jail_uid: int
    egress: EgressHost


@dataclass
class Started:
    """A spawned jail: its outermost host process (killing its session ends the run) and the egress session the
    run holds, if any (its refusals are read once the run ends)."""

    process: asyncio.subprocess.Process
    egress: EgressSession | None


class Jail(Protocol):
    """One isolation tier."""

    @property
    def isolation(self) -> Isolation:
        """The tier's name, as sandboxes and settings spell it."""
        ...

    async def unavailable(self) -> str | None:
        """None when this tier can run jails on this host, else why not and how to fix it (checked once)."""
        ...

    def cgroup_limits(self, limits: ResourceLimits) -> ResourceLimits:
        """What the run's host cgroup enforces for a run asking ``limits``: the same, or more where the tier's
        own machinery runs inside the group too (gVisor's kernel and file server are host threads there)."""
        ...

    async def start(
        self, spec: RunSpec, profile: JailProfile, group: RunCgroup, release: contextlib.AsyncExitStack
    ) -> Started:
        """Apply the tier's layers in order and spawn the run; the child joins ``group`` before it execs.
        What the layers hold (proxy, fds, state folders) is pushed onto ``release``."""
        ...
