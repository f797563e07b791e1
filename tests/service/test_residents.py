"""Residents on the real runner: the real jail, a real cgroup per resident, a real socket folder.

Each test fails if something of a resident (a process of its uid, its cgroup, its socket folder) outlives it, or
if the server cannot reach it through the socket it made.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from cloche.errors import ResidentLimit
from cloche.jail.bwrap_jail import BwrapJail
from cloche.jail.cgroups import Cgroups
from cloche.jail.egress_layer import EgressHost
from cloche.jail.mounts import write_synthetic_etc
from cloche.jail.profile import JailProfile, ResourceLimits, RunSpec
from cloche.jail.runner import Runner
from cloche.jail.supervisor import Children
from cloche.jail.tier import TierHost
from cloche.jail.tools import stage_tools
from cloche.service.resident_log import LogBuffer
from cloche.service.residents import Residents
from conftest import pool_processes, traversable_dir

HOST_UID = 350_000 + os.getpid() % 40_000
JAIL_UID = 1000
ECHO_SERVER = """
import socket
s = socket.socket(socket.AF_UNIX)
s.bind("/run/resident/echo.sock")
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(100).upper())
    c.close()
"""


class Host:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.groups = Cgroups.detect(f"cloche-test-residents-{os.getpid()}")
        etc = write_synthetic_etc(root / "jail", JAIL_UID)
        self.run_dir = root / "run"
        self.run_dir.mkdir(mode=0o711)
        children = Children()
        host = TierHost(children, etc, JAIL_UID, EgressHost(self.run_dir))
        bwrap = BwrapJail(host, stage_tools(root / "jail").bwrap)
        self.runner = Runner(self.groups, children, [bwrap])

    def registry(self, most: int = 4, log_bytes: int = 65536) -> Residents:
        return Residents(self.runner, self.run_dir, log_bytes=log_bytes, most_per_sandbox=most)

    def profile(self, uid: int = HOST_UID) -> JailProfile:
        return JailProfile(name="exec", host_uid=uid)

    def assert_nothing_left(self, uid: int = HOST_UID) -> None:
        assert pool_processes(uid, uid + 1) == []
        assert self.groups.leftovers() == []
        assert list(self.run_dir.iterdir()) == []


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    root = traversable_dir()
    made = Host(root)
    try:
        yield made
    finally:
        made.groups.remove_parent()
        shutil.rmtree(root, ignore_errors=True)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


def spec(*argv: str, seconds: float = 60.0) -> RunSpec:
    return RunSpec(argv=argv, timeout_seconds=seconds, output_limit_bytes=None, limits=ResourceLimits(pids=64))


def ask(path: Path, text: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(path))
        conn.sendall(text)
        return conn.recv(100)


def test_a_resident_is_reached_through_its_socket_and_leaves_nothing_once_stopped(host: Host) -> None:
    async def scenario() -> None:
        residents = host.registry()
        resident = await residents.start("sb_a", "process", spec("/usr/bin/python3", "-c", ECHO_SERVER), host.profile())
        path = await resident.wait_for_socket("echo.sock", timeout=20)
        assert path.parent == resident.socket_dir
        assert await asyncio.to_thread(ask, path, b"hello") == b"HELLO"
        assert "listening" in resident.log.text()
        assert pool_processes(HOST_UID, HOST_UID + 1)  # it lives between requests
        assert [r.id for r in residents.listing("sb_a")] == [resident.id]
        stopped = await residents.stop(resident.id)
        assert stopped is resident and resident.status == "killed"
        assert residents.get(resident.id) is None
        host.assert_nothing_left()

    run(scenario)


def test_the_lifetime_cap_ends_a_resident_and_its_socket_folder(host: Host) -> None:
    async def scenario() -> None:
        residents = host.registry()
        resident = await residents.start("sb_a", "process", spec("/bin/sleep", "60", seconds=1.0), host.profile())
        result = await asyncio.wait_for(resident.wait(), timeout=30)
        assert result.status == "timed_out"
        assert not resident.socket_dir.exists()
        assert residents.listing("sb_a") == [resident]  # still listed with its outcome until stopped
        await residents.stop(resident.id)
        host.assert_nothing_left()

    run(scenario)


def test_output_past_the_log_size_is_dropped_never_the_process(host: Host) -> None:
    async def scenario() -> None:
        residents = host.registry(log_bytes=4096)
        loud = spec("/bin/sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; echo done")
        resident = await residents.start("sb_a", "process", loud, host.profile())
        result = await asyncio.wait_for(resident.wait(), timeout=30)
        assert result.status == "succeeded"
        read = resident.log.read()
        kept = "".join(c.text for c in read.chunks)
        assert kept.endswith("line 2999\ndone\n")
        assert len(kept.encode()) <= 4096 and read.start > 0 and read.dropped
        await residents.stop(resident.id)
        host.assert_nothing_left()

    run(scenario)


def test_a_sandbox_runs_at_most_its_share_and_stop_sandbox_ends_only_its_own(host: Host) -> None:
    other_uid = HOST_UID + 1

    async def scenario() -> None:
        residents = host.registry(most=1)
        mine = await residents.start("sb_a", "process", spec("/bin/sleep", "60"), host.profile())
        with pytest.raises(ResidentLimit):
            await residents.start("sb_a", "process", spec("/bin/sleep", "60"), host.profile())
        theirs = await residents.start("sb_b", "context", spec("/bin/sleep", "60"), host.profile(other_uid))
        for uid in (HOST_UID, other_uid):  # both jails up before one sandbox's are stopped
            await until(lambda uid=uid: bool(pool_processes(uid, uid + 1)))
        assert await residents.stop_sandbox("sb_a") == 1
        assert mine.status == "killed" and theirs.running, (theirs.result, theirs.log.text())
        assert pool_processes(HOST_UID, HOST_UID + 1) == []
        assert pool_processes(other_uid, other_uid + 1)
        await residents.stop_all()
        assert theirs.status == "killed"
        host.assert_nothing_left(other_uid)

    run(scenario)


def test_the_log_resumes_at_an_offset_and_follows_until_the_end() -> None:
    async def scenario() -> None:
        log = LogBuffer(limit_bytes=10)
        log.append("stdout", "abcdef")
        log.append("stderr", "ghij")
        assert log.read(3).chunks[0].text == "def" and log.read(3).end == 10
        log.append("stdout", "klm")  # over 10 bytes: the oldest chunk goes
        read = log.read(0)
        assert read.dropped and read.start == 6 and log.text(0) == "ghijklm"
        seen: list[str] = []

        async def follow() -> None:
            async for chunk in log.follow(13):
                seen.append(chunk.text)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0)
        log.append("stdout", "n")
        log.close()
        await asyncio.wait_for(follower, timeout=5)
        assert seen == ["n"]

    run(scenario)
