"""How bwrap is started (``spawn_host.py``): the compiled ``cloche-spawn`` helper and the ``preexec_fn`` fallback
give the same child, as the sandbox's host uid, in the run's cgroup, under its rlimits, with no fd of the server's
left open, and both refuse to start a jail they could not set up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from _bwrap import HOST_UID, bwrap, jail_command, python, require_jail, workspace

from cloche.errors import JailUnavailable
from cloche.jail import spawn_host
from cloche.jail.bwrap import BwrapCommand
from cloche.jail.cgroup_base import CgroupLimits
from cloche.jail.cgroups import Cgroups, RunCgroup

PARENT = f"cloche-spawn-test-{os.getpid()}"
LIMITS = CgroupLimits(memory_bytes=256 << 20, pids_max=64, cpu_cores=1.0)
# The child reports its rlimits, its seccomp mode and every fd it holds beyond stdio.
PROBE = (
    "import os, resource\n"
    "status = open('/proc/self/status').read()\n"
    "fds = sorted(int(f) for f in os.listdir('/proc/self/fd') if int(f) > 2)\n"
    "print(resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrlimit(resource.RLIMIT_FSIZE),"
    " status.count('Seccomp:\\t2'), len(fds) <= 1)"  # listdir's own fd is the only one allowed
)


@pytest.fixture(params=["helper", "preexec_fn"])
def spawner(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    require_jail()
    if request.param == "preexec_fn":
        return None
    built = spawn_host.build_spawner(tmp_path / "bin")
    if built is None:
        pytest.skip("no C compiler")
    return built


@pytest.fixture
def run_group() -> Iterator[RunCgroup]:
    require_jail()
    try:
        groups = Cgroups.detect(PARENT)
    except JailUnavailable as exc:
        pytest.skip(str(exc))
    group = groups.create("spawned", LIMITS)
    yield group
    groups.remove_parent()


@pytest.fixture
def ws() -> Iterator[Path]:
    with workspace() as path:
        yield path


def _start(spawner: Path | None, ws: Path, group: RunCgroup, code: str) -> tuple[int, str, str, set[int]]:
    cmd = jail_command(ws, python(code))  # layers 1-6 (it runs its own event loop)
    return asyncio.run(_spawn(spawner, cmd, group, code))


async def _spawn(
    spawner: Path | None, cmd: BwrapCommand, group: RunCgroup, code: str
) -> tuple[int, str, str, set[int]]:
    cmd.cgroup_procs_fds += group.procs_fds()
    cmd.rlimits += [(resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_FSIZE, 1 << 20)]
    argv, args_fd = cmd.argv(tuple(python(code)))
    try:
        proc = await spawn_host.spawn(cmd, Path(bwrap()), argv, [args_fd, *cmd.pass_fds], False, spawner)
    finally:
        os.close(args_fd)
        cmd.close_fds()
        group.close_fds()
    members = group.pids()
    status = Path(f"/proc/{proc.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {str(HOST_UID)}
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), members


def test_child_is_the_sandbox_uid_in_its_cgroup_under_its_rlimits(
    spawner: Path | None, ws: Path, run_group: RunCgroup
) -> None:
    code, out, err, members = _start(spawner, ws, run_group, PROBE)
    assert code == 0, err
    assert out.split("\n")[0] == "(64, 64) (1048576, 1048576) 1 True"
    assert members, "bwrap was not in the run's cgroup while it ran"


def test_a_child_that_cannot_join_its_cgroup_is_never_started(
    spawner: Path | None, ws: Path, run_group: RunCgroup
) -> None:
    fds = run_group.procs_fds()
    spare = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # an fd the child cannot write: the join fails
    try:
        run_group._fds = (spare,)
        with pytest.raises(JailUnavailable, match=r"bubblewrap|cgroup"):
            _start(spawner, ws, run_group, "print('ran')")
    finally:
        run_group._fds = tuple(fds)
        with contextlib.suppress(OSError):
            os.close(spare)
    assert not run_group.pids()


def test_root_is_refused(spawner: Path | None, ws: Path) -> None:
    cmd = BwrapCommand(host_uid=0)
    with pytest.raises(JailUnavailable, match="never as root"):
        asyncio.run(spawn_host.spawn(cmd, Path(bwrap()), ["bwrap"], [], False, spawner))
    cmd.close_fds()
