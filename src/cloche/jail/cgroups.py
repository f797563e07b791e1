"""One cgroup per jailed run: memory, process-count and CPU limits, OOM reporting, and a kill that
reaches every process the run left behind (daemons that called setsid included).

Both cgroup layouts are supported and told apart at start-up from ``/proc/self/mounts``; what differs
between them lives in one driver each (``cgroup_v1.py``, ``cgroup_v2.py``, behind ``CgroupDriver`` in
``cgroup_base.py``), and this module does the rest the same way for both.

Lifecycle, as the runner drives it::

    groups = Cgroups.detect()              # once, at start-up (then groups.sweep())
    run = groups.create(run_id, limits)    # root opens each join file here (v1 tasks, v2 cgroup.procs)
    spawn_host.spawn(...)                  # the child writes "0" (itself) to each before exec
    run.close_fds()                        # right after the spawn
    ...; run.kill(); run.oom_killed(); run.memory_peak_bytes(); run.remove()
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from cloche.errors import InvalidRequest, JailUnavailable
from cloche.jail import cgroup_base, cgroup_v1, cgroup_v2
from cloche.jail.cgroup_base import REQUIRED, CgroupDriver, CgroupLimits, Freezer, write
from cloche.jail.profile import ResourceLimits

log = logging.getLogger("cloche.jail.cgroups")
_run_counter = itertools.count()

MOUNTS: Final = Path("/proc/self/mounts")
DRIVERS: Final[Mapping[int, CgroupDriver]] = {1: cgroup_v1.DRIVER, 2: cgroup_v2.DRIVER}
KILL_TIMEOUT: Final = 5.0
_NAME: Final = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_.@-]{0,127}")
HOW_TO_FIX: Final = (
    "cloche must run as root on a host whose memory and pids cgroup controllers it can write: on cgroup "
    "v2 check that /sys/fs/cgroup/cgroup.controllers lists them (a systemd unit needs Delegate=yes; a "
    "container needs a writable /sys/fs/cgroup, e.g. --privileged --cgroupns=private); on cgroup v1 "
    "mount the memory and pids hierarchies under /sys/fs/cgroup."
)


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(f"invalid cgroup {what} {name!r}: use letters, digits, '_', '.', '@', '-'")


def _unescape(field: str) -> str:
    # /proc/self/mounts writes spaces, tabs, newlines and backslashes as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _read_mounts(mounts: Path) -> tuple[dict[str, Path], Path | None]:
    """The v1 controller -> mount point map, and the cgroup2 mount point (first of each wins)."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, kind, options = Path(_unescape(fields[1])), fields[2], fields[3].split(",")
        if kind == "cgroup2" and v2 is None:
            v2 = where
        elif kind == "cgroup":
            for option in options:  # a hierarchy may carry several controllers ("cpu,cpuacct")
                if option in cgroup_v1.CONTROLLERS:
                    v1.setdefault(option, where)
    return v1, v2


class RunCgroup:
    """The group of one run. ``dirs`` maps each controller to its directory (v2: all the same one)."""

    def __init__(self, name: str, version: Literal[1, 2], dirs: Mapping[str, Path]) -> None:
        self.name = name
        self.version = version
        self.dirs = dict(dirs)
        self._driver = DRIVERS[version]
        self._fds: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"RunCgroup({self.name!r}, v{self.version}, {[str(p) for p in self.paths]})"

    @property
    def paths(self) -> tuple[Path, ...]:
        """Each distinct directory once (co-mounted v1 controllers share one)."""
        return tuple(dict.fromkeys(self.dirs.values()))

    def _open_procs(self) -> None:
        fds: list[int] = []
        try:
            for path in self.paths:
                fds.append(os.open(path / self._driver.join_file, os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        self._fds = tuple(fds)

    def procs_fds(self) -> list[int]:
        """The files a process joins the group through (``CgroupDriver.join_file``: ``tasks`` on v1,
        ``cgroup.procs`` on v2), opened by root at creation. O_CLOEXEC: never pass them to bwrap."""
        return list(self._fds)

    def preexec_attach(self) -> None:
        """Move the calling process into the group; meant as (part of) ``preexec_fn``.

        It runs in the forked child after the switch to the sandbox uid, and the kernel still allows it:
        since Linux 5.16 (the CVE-2021-4197 fix, also backported to some stable kernels) both v1 and v2
        check a migration against the credentials the file was *opened* with, which were root's. Older
        v1 kernels checked the writer, and a task may always move itself. Older v2 kernels checked the
        writer's access to the common ancestor's cgroup.procs, so there this fails and the spawn fails.
        "0" means "the writing process" (on v1 through ``tasks``: the caller is single-threaded, a forked child
        or the spawn helper, so its one thread is the process). Only raw writes happen here: nothing to lock or
        allocate.
        """
        fds = self._fds
        if not fds:
            raise JailUnavailable(f"cgroup {self.name}: cgroup.procs is not open (closed too early?)")
        for fd in fds:
            os.write(fd, b"0")

    def attach(self, pid: int) -> None:
        """Move a live process into the group, from the server (root): a run the warm interpreter forked, held
        before its first instruction of user code until this is done."""
        for path in self.paths:
            write(path / "cgroup.procs", pid)

    def close_fds(self) -> None:
        fds, self._fds = self._fds, ()
        for fd in fds:
            os.close(fd)

    def pids(self) -> set[int]:
        """Every process in the group, as host pids."""
        found: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                found.update(int(pid) for pid in (path / "cgroup.procs").read_text().split())
        return found

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed a process of this run (for its memory limit or host-wide)."""
        return self._driver.oom_killed(self.dirs)

    def memory_peak_bytes(self) -> int | None:
        """The run's highest memory use; None where the kernel does not track it (v2 before 5.19)."""
        return self._driver.memory_peak_bytes(self.dirs)

    def cpu_usage_seconds(self) -> float | None:
        """CPU time used by the run so far (user + system)."""
        return self._driver.cpu_usage_seconds(self.dirs)

    def kill(self, timeout: float = KILL_TIMEOUT) -> bool:
        """SIGKILL every process in the group; True once it is empty, False if it is not by ``timeout``."""
        if not self.pids():  # nothing in it can fork into it any more: no freeze cycle (a few ms on v1)
            return True
        deadline = time.monotonic() + timeout
        if self._driver.kill_at_once(self.dirs):
            return self._wait_empty(deadline)
        # Otherwise freeze first so nothing forks between reading the pid list and the kills; a frozen
        # task acts on SIGKILL only once thawed, and a task with a fatal signal pending cannot fork.
        freezer = self._freeze(deadline)
        try:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            if freezer is not None:
                with contextlib.suppress(FileNotFoundError):
                    write(freezer.control, freezer.thawed)
        while self.pids() and time.monotonic() < deadline:
            for pid in self.pids():  # without a freezer, children forked meanwhile need another round
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        return self._wait_empty(deadline)

    def _wait_empty(self, deadline: float) -> bool:
        while self.pids():
            if time.monotonic() >= deadline:
                log.warning("cgroup %s still has processes %s after kill", self.name, sorted(self.pids()))
                return False
            time.sleep(0.005)
        return True

    def _freeze(self, deadline: float) -> Freezer | None:
        """Freeze the group if it can be; the freezer to thaw it with, or None."""
        freezer = self._driver.freezer(self.dirs)
        if freezer is None:
            return None
        try:
            write(freezer.control, freezer.frozen)
        except FileNotFoundError:
            return None
        # Freezing is asynchronous; give it a moment, then kill anyway (a stuck freeze must not win).
        settle = min(deadline, time.monotonic() + 1.0)
        while freezer.marker not in freezer.state.read_text() and time.monotonic() < settle:
            time.sleep(0.002)
        return freezer

    def remove(self, timeout: float = KILL_TIMEOUT) -> bool:
        """Kill what is left, then delete every directory; True when none remains. Never raises for a
        busy group (it runs in clean-up paths): it logs and answers False instead."""
        self.close_fds()
        deadline = time.monotonic() + timeout
        self.kill(timeout)
        gone = True
        for path in self.paths:
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # EBUSY while the last tasks finish exiting; retry briefly, killing again.
                    if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                        self.kill(max(deadline - time.monotonic(), 0.0))
                        time.sleep(0.01)
                        continue
                    log.warning("could not remove cgroup %s: %s", path, exc)
                    gone = False
                    break
        return gone


@dataclass(frozen=True)
class Cgroups:
    """Where run groups live: ``dirs`` maps each usable controller to ``<its mount>/<parent>``."""

    version: Literal[1, 2]
    parent: str
    dirs: Mapping[str, Path]
    mount: Path  # v2: the cgroup2 mount point (v1: the memory hierarchy's)
    # Run groups whose removal did not finish in time (a slow exit under load): retried, never forgotten.
    pending: set[str] = field(default_factory=set, compare=False)

    @classmethod
    def detect(cls, parent: str = "cloche", *, mounts: Path = MOUNTS) -> Cgroups:
        """Find the controllers, create ``parent`` (and on v2 enable controllers down to it).

        Raises ``JailUnavailable`` with a how-to-fix message when memory or pids cannot be used.
        """
        for part in parent.split("/"):
            _check_name(part, "parent")
        try:
            v1, v2 = _read_mounts(mounts)
            v2_controllers = set((v2 / "cgroup.controllers").read_text().split()) if v2 else set()
            if v2 is not None and v2_controllers >= REQUIRED:
                wanted = REQUIRED | ({"cpu"} & v2_controllers)
                cgroup_v2.prepare(v2, parent, wanted, HOW_TO_FIX)
                groups = cls(2, parent, {c: v2 / parent for c in sorted(wanted)}, v2)
            elif v1.keys() >= REQUIRED:
                groups = cls(1, parent, cgroup_v1.prepare(v1, parent), v1["memory"])
            else:
                raise JailUnavailable(
                    f"no usable memory and pids cgroup controllers (v1 hierarchies: {sorted(v1) or 'none'}; "
                    f"v2 at {v2 or 'none'}: {sorted(v2_controllers) or 'none'}). {HOW_TO_FIX}"
                )
        except OSError as exc:
            raise JailUnavailable(f"cannot prepare cgroup {parent!r}: {exc}. {HOW_TO_FIX}") from exc
        if "cpu" not in groups.dirs:
            log.warning("no usable cpu cgroup controller: runs will not have a CPU quota")
        return groups

    def _run(self, name: str) -> RunCgroup:
        return RunCgroup(name, self.version, {c: d / name for c, d in self.dirs.items()})

    def create(self, name: str, limits: CgroupLimits) -> RunCgroup:
        """Create ``<parent>/<name>`` with ``limits`` and open its ``cgroup.procs`` for attaching."""
        _check_name(name, "name")
        run = self._run(name)
        made: list[Path] = []
        try:
            for path in run.paths:
                cgroup_base.make_group(path)
                made.append(path)
            DRIVERS[self.version].set_limits(run.dirs, limits)
            run._open_procs()
        except OSError as exc:
            for path in reversed(made):
                with contextlib.suppress(OSError):
                    path.rmdir()
            what = "already exists" if isinstance(exc, FileExistsError) else f"could not be set up: {exc}"
            raise JailUnavailable(f"cgroup {self.parent}/{name} {what}") from exc
        return run

    def sweep(self) -> int:
        """Kill and remove every group left under the parent (a crash's leftovers); the count removed."""
        names = {path.name for path in self.leftovers()}
        return sum(self._run(name).remove() for name in sorted(names) if _NAME.fullmatch(name))

    def release(self, run: RunCgroup, timeout: float = KILL_TIMEOUT) -> None:
        """Kill and remove ``run``; when it cannot be removed yet it is kept for ``retry_pending``."""
        if not run.remove(timeout):
            self.pending.add(run.name)

    def retry_pending(self) -> int:
        """Remove the groups an earlier ``release`` could not; the count removed (quick: no waiting)."""
        removed = {name for name in sorted(self.pending) if self._run(name).remove(timeout=0.0)}
        self.pending.difference_update(removed)
        return len(removed)

    def remove_parent(self) -> bool:
        """At shutdown: remove every run group left and then the parent itself; True when all is gone."""
        self.sweep()
        gone = True
        for path in dict.fromkeys(self.dirs.values()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove cgroup parent %s: %s", path, exc)
                gone = False
        return gone

    def leftovers(self) -> list[Path]:
        """Every run directory currently under the parent (for diagnostics and tests)."""
        found: list[Path] = []
        for path in dict.fromkeys(self.dirs.values()):
            with contextlib.suppress(FileNotFoundError):
                found.extend(child for child in path.iterdir() if child.is_dir())
        return found


def apply(groups: Cgroups, limits: ResourceLimits, release: contextlib.AsyncExitStack) -> RunCgroup:
    """Create the run's cgroup; the tier's spawned child joins it (``preexec_attach``) before it execs. On
    release everything left in it is killed and it is removed."""
    name = f"run-{os.getpid()}-{next(_run_counter)}"
    group = groups.create(name, CgroupLimits(limits.memory_bytes, limits.pids, limits.cpu_cores))
    release.callback(groups.release, group)
    release.callback(group.kill)
    return group
