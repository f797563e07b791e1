"""The bubblewrap tier: namespaces, mounts and a seccomp filter around code that runs on the host kernel.

``BwrapJail.start`` is this tier's checklist: each numbered line is one layer, a call into its own module,
applied in this order to one bwrap invocation (7, the cgroup, is the runner's and the same for every tier):

1. identity and namespaces (``namespaces.py``): host uid, user/pid/ipc/uts/net/cgroup namespaces, caps
2. filesystem (``mounts.py``): read-only system, synthetic /etc, workspace, private /tmp, profile mounts
3. environment (``environment.py``): cleared, explicit variables and working directory
4. network (``egress_layer.py``): none, or registry-only egress through the host proxy
5. system calls (``seccomp.py``): a deny list compiled to BPF, handed to bwrap on an fd
6. sealed root (``mounts.seal_root``): the root remounted read-only once every layer placed its mounts
7. cgroup: joined by the child before it execs bwrap (``spawn_host.py``: the ``cloche-spawn`` helper)
8. rlimits (``rlimits.py``): file size, open files, processes, no core dumps; set in the child too
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cloche.jail import egress_layer, environment, mounts, namespaces, rlimits, seccomp, spawn_host
from cloche.jail.bwrap import BwrapCommand, bwrap_path
from cloche.jail.cgroups import RunCgroup
from cloche.jail.profile import JailProfile, ResourceLimits, RunSpec
from cloche.jail.tier import Isolation, Started, TierHost
from cloche.steps import mark


class BwrapJail:
    """Spawns bwrap as the sandbox's host uid; nothing is ever run outside it."""

    def __init__(
        self,
        host: TierHost,
        bwrap: Path | None = None,
        *,
        spawner: Path | None = None,
        seccomp_filter: bool = True,
    ) -> None:
        """``spawner`` is the compiled ``cloche-spawn`` (``spawn_host.build_spawner``); None starts bwrap through a
        ``preexec_fn`` instead. ``seccomp_filter=False`` exists for tests only: it proves each other layer holds
        without the filter behind it (the server never sets it)."""
        self._spawner = spawner
        self._host = host
        self._bwrap = bwrap or bwrap_path()
        self._seccomp_filter = seccomp_filter

    @property
    def isolation(self) -> Isolation:
        return "bwrap"

    @property
    def bwrap(self) -> Path:
        return self._bwrap

    async def unavailable(self) -> str | None:
        return None  # the start-up self-test (preflight.py) refuses a host where bwrap cannot work

    def cgroup_limits(self, limits: ResourceLimits) -> ResourceLimits:
        return limits  # every task in the group is the run's (bwrap's two included)

    async def start(
        self, spec: RunSpec, profile: JailProfile, group: RunCgroup, release: contextlib.AsyncExitStack
    ) -> Started:
        """The checklist (see the module docstring): one line per layer, in order, into one bwrap invocation."""
        cmd = BwrapCommand()
        release.callback(cmd.close_fds)
        egress = await self.confine(cmd, spec, profile, release)  # 1-6. namespaces to sealed root
        mark("jail: layers 1-6 (egress proxy included)")
        cmd.cgroup_procs_fds += group.procs_fds()  # 7. cgroup
        rlimits.apply(cmd, spec.limits)  # 8. rlimits
        argv, args_fd = cmd.argv(spec.argv)
        mark("jail: bwrap options written")
        fds, stdin = [args_fd, *cmd.pass_fds], spec.stdin is not None
        try:
            process = await self._host.children.track(
                spawn_host.spawn(cmd, self._bwrap, argv, fds, stdin, self._spawner)
            )
        finally:
            os.close(args_fd)
            cmd.close_fds()
        return Started(process, egress)

    async def confine(
        self, cmd: BwrapCommand, spec: RunSpec, profile: JailProfile, release: contextlib.AsyncExitStack
    ) -> egress_layer.EgressSession | None:
        """Layers 1-6 of the checklist; the jail tests build their bwrap invocation here too."""
        namespaces.apply(cmd, profile, self._host.jail_uid)  # 1. identity and namespaces
        mounts.apply(cmd, profile, self._host.synthetic_etc)  # 2. filesystem
        environment.apply(cmd, spec)  # 3. environment
        egress = await egress_layer.apply(cmd, profile, self._host.egress, release)  # 4. network
        if self._seccomp_filter:
            seccomp.apply(cmd)  # 5. system calls
        mounts.seal_root(cmd)  # 6. sealed root
        return egress
