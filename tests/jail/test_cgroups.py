"""Run cgroups on the real kernel (whichever layout the host has), with processes jailed by real bwrap.

Every group lives under a parent unique to this pytest process, so a running server's groups are never
touched, and fixtures kill and remove everything even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _bwrap import FORK_BOMB, python, require_jail, spawn_jailed, workspace

from cloche.errors import InvalidRequest, JailUnavailable
from cloche.jail.cgroup_base import CgroupLimits
from cloche.jail.cgroups import Cgroups, RunCgroup
from cloche.jail.rlimits import Rlimits

PARENT = f"cloche-test-{os.getpid()}"
MiB = 1 << 20
LIMITS = CgroupLimits(memory_bytes=256 * MiB, pids_max=64, cpu_cores=2.0)
Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def groups() -> Iterator[Cgroups]:
    require_jail()
    try:
        found = Cgroups.detect(PARENT)
    except JailUnavailable as exc:
        pytest.skip(str(exc))
    yield found
    found.sweep()
    for path in dict.fromkeys(found.dirs.values()):
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()


@pytest.fixture
def make_run(groups: Cgroups) -> Iterator[Callable[..., RunCgroup]]:
    made: list[RunCgroup] = []

    def make(name: str, limits: CgroupLimits = LIMITS) -> RunCgroup:
        run = groups.create(name, limits)
        made.append(run)
        return run

    yield make
    for run in made:
        run.remove()


@pytest.fixture
def ws() -> Iterator[Path]:
    with workspace() as path:
        yield path


@pytest.fixture
def spawn(ws: Path) -> Iterator[Spawn]:
    """Start processes as the sandbox uid, attached to ``run``; all are killed and reaped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(command: list[str], run: RunCgroup, *, jail: bool = True) -> subprocess.Popen[str]:
        try:
            proc = spawn_jailed(command, ws, preexec=run.preexec_attach, jail=jail)
        finally:
            run.close_fds()  # what the runner does right after the spawn
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.communicate(timeout=30)


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for whichever init adopted it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_spawned_jail_lands_in_the_group(make_run: Callable[..., RunCgroup], spawn: Spawn) -> None:
    run = make_run("attach")
    proc = spawn(python("import time; time.sleep(60)"), run)
    # bwrap, its init and the Python inside: all three are members.
    assert _wait_for(lambda: len(run.pids()) >= 3), run.pids()
    assert proc.pid in run.pids()
    assert run.kill()
    assert proc.wait(timeout=10) != 0


def test_preexec_attach_fails_closed_when_fds_are_closed(make_run: Callable[..., RunCgroup], ws: Path) -> None:
    run = make_run("closed")
    run.close_fds()
    with pytest.raises(subprocess.SubprocessError):
        spawn_jailed(python("pass"), ws, preexec=run.preexec_attach)


def test_memory_hog_is_oom_killed(make_run: Callable[..., RunCgroup], spawn: Spawn) -> None:
    run = make_run("hog", CgroupLimits(memory_bytes=64 * MiB, pids_max=64, cpu_cores=2.0))
    hog = "b = bytearray(512 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')"
    proc = spawn(python(hog), run)
    out, _ = proc.communicate(timeout=60)
    assert "survived" not in out
    assert proc.returncode != 0
    assert run.oom_killed()
    peak = run.memory_peak_bytes()
    assert peak is None or 32 * MiB < peak <= 64 * MiB


def test_modest_run_is_not_reported_as_oom(make_run: Callable[..., RunCgroup], spawn: Spawn) -> None:
    run = make_run("modest", CgroupLimits(memory_bytes=128 * MiB, pids_max=64, cpu_cores=2.0))
    proc = spawn(python("b = bytearray(16 << 20); print('ok')"), run)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out.strip()) == (0, "ok"), err
    assert not run.oom_killed()


def test_forks_stop_at_pids_max(make_run: Callable[..., RunCgroup], spawn: Spawn) -> None:
    run = make_run("forks", CgroupLimits(memory_bytes=256 * MiB, pids_max=16, cpu_cores=2.0))
    code = """
import errno, os, signal
children = []
try:
    for _ in range(100):
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        children.append(pid)
    print("unbounded", len(children))
except OSError as e:
    print(errno.errorcode[e.errno], len(children))
for pid in children:
    os.kill(pid, signal.SIGKILL)
"""
    proc = spawn(python(code), run)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    reason, count = out.split()
    # bwrap's monitor, its init and the forking Python take three of the sixteen.
    assert (reason, int(count)) == ("EAGAIN", 16 - 3)


@pytest.mark.slow
@pytest.mark.parametrize("freezer", [True, False], ids=["freezer", "no-freezer"])
def test_fork_bomb_is_contained_and_killed(make_run: Callable[..., RunCgroup], spawn: Spawn, freezer: bool) -> None:
    run = make_run(f"bomb-{freezer}", CgroupLimits(memory_bytes=512 * MiB, pids_max=32, cpu_cores=1.0))
    if not freezer and run.version == 2:
        pytest.skip("v2 kills through cgroup.kill, not the freezer")
    # Every process keeps forking forever, retrying when the kernel says no: the group stays full.
    proc = spawn(python(FORK_BOMB), run)
    assert _wait_for(lambda: len(run.pids()) >= 30), len(run.pids())
    time.sleep(0.5)
    assert len(run.pids()) <= 32
    # Without a freezer (v1 hosts that lack it), kill() races the forks with repeated rounds instead.
    dirs = {c: path for c, path in run.dirs.items() if freezer or c != "freezer"}
    killer = RunCgroup(run.name, run.version, dirs)
    assert killer.kill()
    assert run.pids() == set()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_cpu_quota_limits_a_spin_loop(make_run: Callable[..., RunCgroup], spawn: Spawn) -> None:
    run = make_run("spin", CgroupLimits(memory_bytes=256 * MiB, pids_max=64, cpu_cores=0.5))
    two_spinners = """
import os, time
end = time.monotonic() + 1.5
pid = os.fork()
while time.monotonic() < end:
    pass
if pid:
    os.waitpid(pid, 0)
"""
    start = time.monotonic()
    proc = spawn(python(two_spinners), run)
    assert proc.wait(timeout=60) == 0
    used = run.cpu_usage_seconds()
    if used is None:
        pytest.skip("no CPU accounting for the group")
    # Two spinners would use two cores; the quota allows half of one. Other load on the machine can
    # only lower the share, so the upper bound is what matters; the throttle count proves the quota bit.
    share = used / (time.monotonic() - start)
    assert 0.05 < share < 0.65, share
    stat = (run.dirs["cpu"] / "cpu.stat").read_text().split()
    assert int(stat[stat.index("nr_throttled") + 1]) > 0


DAEMON = """
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        time.sleep(300)
    os._exit(0)
print(os.read(r, 32).decode(), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("jail", [False, True], ids=["plain", "bwrap"])
def test_kill_reaches_a_setsid_daemon(make_run: Callable[..., RunCgroup], spawn: Spawn, jail: bool) -> None:
    run = make_run(f"daemon-{jail}")
    proc = spawn(python(DAEMON), run, jail=jail)
    assert proc.stdout is not None
    daemon = int(proc.stdout.readline())
    if not jail:
        # It escaped the session and process group a killpg would reach: only the cgroup still holds it.
        assert os.getsid(daemon) != os.getsid(proc.pid)
        assert daemon in run.pids()
    assert run.kill()
    assert run.pids() == set()
    assert proc.wait(timeout=10) != 0
    if not jail:
        assert _wait_for(lambda: _dead(daemon))


def test_remove_kills_and_leaves_no_directory(make_run: Callable[..., RunCgroup], spawn: Spawn) -> None:
    run = make_run("removed")
    proc = spawn(python("import time; time.sleep(60)"), run)
    assert _wait_for(lambda: proc.pid in run.pids())
    assert run.remove()
    assert not any(path.exists() for path in run.paths)
    assert proc.wait(timeout=10) != 0


def test_sweep_removes_leftovers(groups: Cgroups, spawn: Spawn) -> None:
    busy = groups.create("left-busy", LIMITS)
    groups.create("left-idle", LIMITS).close_fds()
    proc = spawn(python("import time; time.sleep(60)"), busy)
    assert _wait_for(lambda: proc.pid in busy.pids())
    # A restarted server detects the same parent and sweeps what the previous one left behind.
    assert Cgroups.detect(PARENT).sweep() == 2
    assert groups.leftovers() == []
    assert proc.wait(timeout=10) != 0


def test_a_group_that_cannot_be_removed_yet_is_retried_not_forgotten(groups: Cgroups, spawn: Spawn) -> None:
    run = groups.create("slow-exit", LIMITS)
    proc = spawn(python("import time; time.sleep(60)"), run)
    assert _wait_for(lambda: proc.pid in run.pids())
    blocker = run.paths[0] / "busy"  # a nested group keeps rmdir failing, as a task slow to exit does
    blocker.mkdir()
    groups.release(run, timeout=0.2)
    assert groups.pending == {"slow-exit"} and run.paths[0].exists()
    assert proc.wait(timeout=10) != 0  # the run's processes are killed all the same
    blocker.rmdir()
    assert groups.retry_pending() == 1
    assert groups.pending == set() and not any(path.exists() for path in run.paths)


def test_remove_parent_kills_what_is_left_and_removes_the_parent(groups: Cgroups, spawn: Spawn) -> None:
    run = groups.create("left-at-shutdown", LIMITS)
    proc = spawn(python("import time; time.sleep(60)"), run)
    assert _wait_for(lambda: proc.pid in run.pids())
    assert groups.remove_parent()
    assert not any(path.exists() for path in groups.dirs.values())
    assert proc.wait(timeout=10) != 0


def test_bad_and_duplicate_names_are_refused(groups: Cgroups, make_run: Callable[..., RunCgroup]) -> None:
    for name in ("..", "a/b", "", "-x", "x" * 200):
        with pytest.raises(InvalidRequest):
            groups.create(name, LIMITS)
    make_run("twice")
    with pytest.raises(JailUnavailable, match="already exists"):
        groups.create("twice", LIMITS)


def test_runner_wiring_attach_then_rlimits_under_seccomp(make_run: Callable[..., RunCgroup], ws: Path) -> None:
    """The composition the runner uses: one preexec_fn (attach, then rlimits), seccomp via pass_fds."""
    run = make_run("wired")
    limits = Rlimits(fsize_bytes=1 << 20, nofile=64, nproc=64)

    def preexec() -> None:
        run.preexec_attach()
        limits.preexec_apply()

    code = (
        "import resource; status = open('/proc/self/status').read()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[1], status.count('Seccomp:\\t2'))"
    )
    try:
        proc = spawn_jailed(python(code), ws, preexec=preexec)
    finally:
        run.close_fds()
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out.split()) == (0, ["64", "1"]), err
    assert (run.cpu_usage_seconds() or 0) > 0
