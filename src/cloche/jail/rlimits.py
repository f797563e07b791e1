"""Per-process resource limits for a jailed run, applied in the spawned child before it execs bwrap.

Why in the spawned child (``spawn_host.py``: the ``cloche-spawn`` helper, or a ``preexec_fn`` where no
compiler works) and not a ``/usr/bin/prlimit`` prefix:

* The child already joins the run's cgroup there; a handful of ``setrlimit`` calls cost nothing, while
  prlimit adds an exec per run and a host dependency on util-linux.
* Applied before bwrap starts, the limits bind bwrap, its init and everything in the jail, and they
  are inherited across every later exec (recent kernels also copy RLIMIT_NPROC into the ceiling of
  the user namespace bwrap creates afterwards).
* Soft and hard are set equal. The child has already switched to the sandbox uid, which cannot raise
  a hard limit again, so the jailed code cannot undo them.

RLIMIT_NPROC counts every task (threads included) of the *real host uid*, across namespaces. Each
sandbox has its own host uid, so it bounds that sandbox alone: a second line of defence beside the
pids cgroup, which bounds one run. It counts bwrap's own two processes as well.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from cloche.errors import InvalidRequest
from cloche.jail.bwrap import BwrapCommand
from cloche.jail.profile import ResourceLimits

# bwrap itself needs a few descriptors and a few tasks before the jailed program starts.
MIN_NOFILE = 16
MIN_NPROC = 4
# RLIMIT_NPROC also counts bwrap's own processes, so it sits a little above the run's pids limit.
NPROC_HEADROOM = 16


@dataclass(frozen=True)
class Rlimits:
    """Hard limits for one run. ``core`` stays 0: a core file would land in the workspace."""

    fsize_bytes: int
    nofile: int
    nproc: int
    core: int = 0

    def __post_init__(self) -> None:
        if self.fsize_bytes <= 0:
            raise InvalidRequest(f"fsize_bytes must be positive, got {self.fsize_bytes}")
        if self.nofile < MIN_NOFILE:
            raise InvalidRequest(f"nofile must be at least {MIN_NOFILE}, got {self.nofile}")
        if self.nproc < MIN_NPROC:
            raise InvalidRequest(f"nproc must be at least {MIN_NPROC}, got {self.nproc}")
        if self.core < 0:
            raise InvalidRequest(f"core must not be negative, got {self.core}")

    def pairs(self) -> tuple[tuple[int, int], ...]:
        """(resource, value) for each limit, in the order ``preexec_apply`` sets them."""
        return (
            (resource.RLIMIT_FSIZE, self.fsize_bytes),
            (resource.RLIMIT_NOFILE, self.nofile),
            (resource.RLIMIT_NPROC, self.nproc),
            (resource.RLIMIT_CORE, self.core),
        )

    def preexec_apply(self) -> None:
        """Set each limit (soft = hard). Runs in the forked child, after the switch to the sandbox uid.

        Only lowering is possible there; a value above the server's own hard limit fails with EPERM,
        which makes the spawn fail rather than run with a weaker limit.
        """
        for which, value in self.pairs():
            resource.setrlimit(which, (value, value))


def apply(cmd: BwrapCommand, limits: ResourceLimits) -> None:
    """Set the run's rlimits in the spawned child, after the cgroup attach, before bwrap starts."""
    rlimits = Rlimits(limits.file_size_bytes, limits.open_files, nproc=limits.pids + NPROC_HEADROOM)
    cmd.rlimits += rlimits.pairs()
