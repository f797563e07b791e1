"""Resource abuse in the real jail, through a real server: each attack ends with the right status.

Every attack runs in one sandbox while a neighbour sandbox runs an ordinary exec that overlaps it; the
neighbour must finish correctly and in reasonable time. Afterwards the host must be clean: no process of the
server's uid pool, no run cgroup under the server's cgroup parent, ``/health`` ok, and the attacking
sandbox runs ``echo ok`` normally again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _bwrap import FORK_BOMB

from cloche.api.state import cgroup_parent
from cloche.jail.cgroups import Cgroups, RunCgroup
from cloche.jail.runner import _Capture, _watch
from conftest import ServerProcess, pool_processes
from tests_support import assert_clean, run_command

Result = dict[str, Any]

# The neighbour sleeps first, so its work falls inside long attacks; quick attacks happen during its sleep.
NEIGHBOUR = "sleep 1; python3 -c 'print(sum(range(10**6)))'"
NEIGHBOUR_OUT = "499999500000\n"
# Generous: the neighbour needs ~0.3 s of work after its 1 s sleep, on a shared 2-core test machine.
NEIGHBOUR_SECONDS = 12.0


def cpu_groups(server: ServerProcess) -> list[tuple[Path, int, int]]:
    """(run cgroup, CPU quota in us per 100 ms period, times throttled) of the server's live runs."""
    groups = Cgroups.detect(cgroup_parent(server.data_dir.resolve()))
    cpu = groups.dirs.get("cpu")
    found: list[tuple[Path, int, int]] = []
    for path in groups.leftovers():
        if cpu is None or path.parent != cpu:
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if groups.version == 2:
                quota = int((path / "cpu.max").read_text().split()[0])
            else:
                quota = int((path / "cpu.cfs_quota_us").read_text())
            stat = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines())
            found.append((path, quota, int(stat["nr_throttled"])))
    return found


run = functools.partial(run_command, default_timeout=None)


def run_record(api: httpx.Client, sid: str, run_id: str) -> Result:
    record: Result = api.get(f"/v1/sandboxes/{sid}/runs/{run_id}").json()
    return record


def create(api: httpx.Client, **body: Any) -> str:
    response = api.post("/v1/sandboxes", json=body)
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    return sid


def host_uid(server: ServerProcess, sid: str) -> int:
    return (server.data_dir / "workspaces" / sid).stat().st_uid


@dataclass
class Outcome:
    result: Result  # the attack's exec result
    seconds: float  # the attack's wall time as the client saw it
    peak_processes: int  # most host processes of the attacker's uid seen at once
    cpu_cores: float | None  # CPU time the attacker's live processes used per wall second, after the first second


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of live processes (their exited children are not counted)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def run_group_usage(server: ServerProcess, neighbour_uid: int) -> float | None:
    """CPU seconds used so far by the live run cgroup that is not the neighbour's, if there is one: how a gVisor
    run is measured, whose processes (runsc, the Sentry, the Gofer) never run as the sandbox's uid."""
    groups = Cgroups.detect(cgroup_parent(server.data_dir.resolve()))
    for name in sorted({path.name for path in groups.leftovers()}):
        group = RunCgroup(name, groups.version, {c: d / name for c, d in groups.dirs.items()})
        with contextlib.suppress(OSError):
            procs = group.pids()
            if not procs or any(Path(f"/proc/{pid}").stat().st_uid == neighbour_uid for pid in procs):
                continue
            return group.cpu_usage_seconds()
    return None


def cpu_rate(samples: list[tuple[float, float]]) -> float | None:
    """Cores used between one second into the attack and its last sample, if that spans 1.5 s or more."""
    if not samples:
        return None
    late = [(t, c) for t, c in samples if t >= samples[0][0] + 1.0]
    if len(late) < 2 or late[-1][0] - late[0][0] < 1.5:
        return None
    return (late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0])


def attack(
    server: ServerProcess,
    api: httpx.Client,
    sid: str,
    neighbour: str,
    command: str,
    during: Callable[[], None] | None = None,
    **body: Any,
) -> Outcome:
    """Run ``command`` in ``sid`` while ``neighbour`` runs an ordinary exec that overlaps it.

    The neighbour's exec must succeed with the right output within ``NEIGHBOUR_SECONDS``. ``during`` is
    called about every 50 ms while the attack runs.
    """
    found: dict[str, Any] = {}

    def neighbour_exec() -> None:
        started = time.monotonic()
        found["neighbour"] = run(api, neighbour, NEIGHBOUR, timeout_seconds=60)
        found["neighbour_seconds"] = time.monotonic() - started

    def attack_exec() -> None:
        started = time.monotonic()
        found["attack"] = run(api, sid, command, **body)
        found["attack_seconds"] = time.monotonic() - started

    side = threading.Thread(target=neighbour_exec)
    side.start()
    deadline = time.monotonic() + 10
    neighbour_uid = host_uid(server, neighbour)
    while not pool_processes(neighbour_uid, neighbour_uid + 1) and side.is_alive():
        assert time.monotonic() < deadline, "the neighbour's exec never started"
        time.sleep(0.02)
    assert side.is_alive(), "the neighbour finished before the attack began"
    main = threading.Thread(target=attack_exec)
    main.start()
    uid = host_uid(server, sid)
    peak = 0
    samples: list[tuple[float, float]] = []
    while main.is_alive():
        pids = pool_processes(uid, uid + 1)
        peak = max(peak, len(pids))
        if pids:
            samples.append((time.monotonic(), cpu_seconds(pids)))
        elif (usage := run_group_usage(server, neighbour_uid)) is not None:  # gVisor: no process runs as the uid
            samples.append((time.monotonic(), usage))
        if during is not None:
            during()
        time.sleep(0.05)
    main.join()
    side.join(120)
    neighbour_result = found["neighbour"]
    assert (neighbour_result["status"], neighbour_result["stdout"]) == ("succeeded", NEIGHBOUR_OUT), neighbour_result
    assert found["neighbour_seconds"] < NEIGHBOUR_SECONDS, found["neighbour_seconds"]
    return Outcome(found["attack"], found["attack_seconds"], peak, cpu_rate(samples[:-2]))


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=180) as client:
        yield client


@pytest.fixture(scope="module")
def neighbour(api: httpx.Client) -> str:
    return create(api, language="python")


@pytest.fixture
def box(api: httpx.Client, isolation: str) -> str:
    """The attacker's sandbox, in the module's tier (the neighbour stays on the default one)."""
    return create(api, language="python", isolation=isolation)


def put(api: httpx.Client, sid: str, name: str, code: str) -> None:
    response = api.put(f"/v1/sandboxes/{sid}/files/{name}", content=code.encode())
    assert response.status_code == 201, response.text


# --- processes and threads ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_fork_bomb_is_capped_and_killed_at_the_clock(
    server: ServerProcess, api: httpx.Client, box: str, neighbour: str, isolation: str
) -> None:
    put(api, box, "bomb.py", FORK_BOMB)
    pids = 64
    out = attack(server, api, box, neighbour, "python3 bomb.py", timeout_seconds=5, limits={"pids": pids})
    assert out.seconds < 5 + 10
    if isolation == "bwrap":
        assert out.result["status"] == "timed_out", out.result
        assert out.result["exit_code"] is None
        # The pids cgroup counts every task of the run (bwrap included): the bomb never got past it.
        assert 8 < out.peak_processes <= pids
    else:
        # The Sentry's host tasks grow with the bomb until the run's host pids limit stops them, which ends the
        # whole sandbox (gVisor's kernel cannot start another thread) unless the clock came first.
        assert out.result["status"] in ("timed_out", "failed"), out.result
        assert out.peak_processes == 0  # nothing ever ran as the sandbox's uid on the host
    assert_clean(server, api, box)


THREAD_BOMB = """
import threading, time
stop = threading.Event()
count = 0
try:
    while True:
        threading.Thread(target=stop.wait, daemon=True).start()
        count += 1
except RuntimeError as exc:
    print(count, exc)
time.sleep(1)
stop.set()
"""


def test_thread_bomb_hits_the_pids_limit(server: ServerProcess, api: httpx.Client, box: str, neighbour: str) -> None:
    put(api, box, "threads.py", THREAD_BOMB)
    out = attack(server, api, box, neighbour, "python3 threads.py", timeout_seconds=20, limits={"pids": 64})
    assert out.result["status"] == "succeeded", out.result
    count, _, message = out.result["stdout"].strip().partition(" ")
    assert "can't start new thread" in message
    assert 0 < int(count) < 64
    assert_clean(server, api, box)


# --- memory ------------------------------------------------------------------------------------------------

HEAP_HOG = """
import time
hog = []
while True:
    hog.append(bytearray(1 << 20))  # bytearray() zero-fills: the pages are really touched
    time.sleep(0.005)
"""


def test_heap_hog_is_oom_killed(server: ServerProcess, api: httpx.Client, box: str, neighbour: str) -> None:
    put(api, box, "hog.py", HEAP_HOG)
    out = attack(server, api, box, neighbour, "python3 hog.py", timeout_seconds=30, limits={"memory_mb": 64})
    assert out.result["status"] == "oom_killed", out.result
    assert "64 MiB" in run_record(api, box, out.result["run_id"])["error"]
    assert out.seconds < 20
    assert_clean(server, api, box)


TMP_HOG = """
import errno, sys
chunk = b"x" * (1 << 20)
try:
    with open(sys.argv[1] + "/fill", "wb") as f:
        while True:
            f.write(chunk)
            f.flush()
except OSError as exc:
    print(errno.errorcode[exc.errno])
    sys.exit(3)
"""


@pytest.mark.parametrize(
    ("folder", "memory_mb", "status"),
    [("/tmp", 64, "oom_killed"), ("/tmp", 1024, "failed"), ("/dev/shm", 64, "oom_killed")],
)
def test_tmpfs_hog_is_oom_killed_or_gets_enospc(
    server: ServerProcess, api: httpx.Client, box: str, neighbour: str, folder: str, memory_mb: int, status: str
) -> None:
    # tmpfs pages are charged to the run's memory cgroup. /tmp also has a size cap (256 MiB by default): under
    # a small memory limit the run is OOM-killed, under a large one it gets ENOSPC. /dev/shm (part of the
    # jail's /dev tmpfs) has no size cap of its own: the memory limit is what bounds it.
    put(api, box, "tmphog.py", TMP_HOG)
    command = f"python3 tmphog.py {folder}"
    out = attack(server, api, box, neighbour, command, timeout_seconds=30, limits={"memory_mb": memory_mb})
    assert out.result["status"] == status, out.result
    if status == "failed":
        assert (out.result["exit_code"], out.result["stdout"]) == (3, "ENOSPC\n")
    assert_clean(server, api, box)


# --- CPU ---------------------------------------------------------------------------------------------------

SPIN = """
import multiprocessing, os
def spin():
    while True:
        pass
workers = [multiprocessing.Process(target=spin) for _ in range(2 * (os.cpu_count() or 1))]
for worker in workers:
    worker.start()
print("spinning", flush=True)
spin()
"""


@pytest.mark.slow
def test_cpu_spin_on_every_core_leaves_room_for_others(
    server: ServerProcess, api: httpx.Client, box: str, neighbour: str
) -> None:
    put(api, box, "spin.py", SPIN)
    throttled: dict[str, int] = {}

    def watch_quota() -> None:
        # The run's own cgroup: its CPU quota (half a core, unlike the neighbour's) and how often it bit.
        for group, quota, count in cpu_groups(server):
            if quota == 50_000:
                throttled[group.name] = max(throttled.get(group.name, 0), count)

    limits = {"cpu_cores": 0.5}
    out = attack(server, api, box, neighbour, "python3 spin.py", watch_quota, timeout_seconds=6, limits=limits)
    assert out.result["status"] == "timed_out", out.result
    assert out.result["stdout"] == "spinning\n"
    assert out.seconds < 6 + 10
    # 2 x cores spinners ask for every core; the quota throttled the run and held it to about half of one.
    assert len(throttled) == 1 and next(iter(throttled.values())) > 0, throttled
    assert out.cpu_cores is not None and out.cpu_cores < 0.5 * 1.3, out.cpu_cores
    assert_clean(server, api, box)


# --- output ------------------------------------------------------------------------------------------------

FLOOD = """
import sys
block = "x" * 65536
while True:
    sys.stdout.write(block)
    sys.stderr.write(block)
"""


def test_output_flood_without_newlines_is_cut(
    server: ServerProcess, api: httpx.Client, box: str, neighbour: str
) -> None:
    put(api, box, "flood.py", FLOOD)
    cap = 100_000
    out = attack(server, api, box, neighbour, "python3 flood.py", timeout_seconds=30, limits={"output_bytes": cap})
    assert out.result["status"] == "output_limit", out.result
    assert out.result["truncated"] is True
    assert out.result["exit_code"] is None
    assert 0 < len(out.result["stdout"]) <= cap and 0 < len(out.result["stderr"]) <= cap
    assert set(out.result["stdout"]) == {"x"}
    assert out.seconds < 20
    assert_clean(server, api, box)


# --- disk --------------------------------------------------------------------------------------------------

DISK_FILL = """
import secrets
block = b"x" * (1 << 22)
while True:
    with open("fill-" + secrets.token_hex(4), "wb") as f:
        for _ in range(4):
            f.write(block)
"""


def workspace_bytes(server: ServerProcess, sid: str) -> int:
    st = os.statvfs(server.data_dir / "workspaces" / sid)  # the workspace is its own volume
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.mark.slow
def test_disk_fill_gets_enospc_at_the_quota(server: ServerProcess, api: httpx.Client, neighbour: str) -> None:
    sid = create(api, language="python", limits={"disk_mb": 8})
    put(api, sid, "fill.py", DISK_FILL)
    out = attack(server, api, sid, neighbour, "python3 fill.py", timeout_seconds=60)
    # The kernel refuses the write past the quota: the program sees ENOSPC (and here dies of it).
    assert out.result["status"] == "failed", out.result
    assert "No space left on device" in out.result["stderr"]
    assert out.seconds < 30
    assert workspace_bytes(server, sid) <= 10 * 2**20
    # At its quota, the workspace takes no upload (a few blocks may come free once ext4 has written the
    # data out), and a second run gets no more room than the first.
    upload = api.put(f"/v1/sandboxes/{sid}/files/more.bin", content=b"y" * 2**20)
    assert upload.status_code == 413, upload.text
    assert upload.json()["error"]["code"] == "too_large"
    again = run(api, sid, "python3 fill.py", timeout_seconds=60)
    assert again["status"] == "failed" and "No space left on device" in again["stderr"], again
    assert workspace_bytes(server, sid) <= 10 * 2**20
    # Deleting files through the API brings the sandbox back.
    for entry in api.get(f"/v1/sandboxes/{sid}/files").json()["files"]:
        if entry["path"].startswith("fill-"):
            assert api.delete(f"/v1/sandboxes/{sid}/files/{entry['path']}").status_code == 204
    assert api.put(f"/v1/sandboxes/{sid}/files/more.bin", content=b"y" * 4096).status_code == 201
    assert_clean(server, api, sid)


INODE_FILL = """
import os
os.mkdir("many")
i = 0
while True:
    open(f"many/{i}", "w").close()
    i += 1
"""


@pytest.mark.slow
def test_inode_fill_gets_enospc_at_the_limit(fresh_server: ServerProcess) -> None:
    fresh_server.env["CLOCHE_WORKSPACE_INODES"] = "2000"
    fresh_server.start()
    with httpx.Client(base_url=fresh_server.url, timeout=180) as api:
        sid, other = create(api), create(api)
        put(api, sid, "inodes.py", INODE_FILL)
        out = attack(fresh_server, api, sid, other, "python3 inodes.py", timeout_seconds=60)
        assert out.result["status"] == "failed", out.result
        assert "No space left on device" in out.result["stderr"]
        made = len(list((fresh_server.data_dir / "workspaces" / sid / "many").iterdir()))
        assert 1900 < made < 2100, made  # ext4 rounds the count up to whole inode-table blocks
        upload = api.put(f"/v1/sandboxes/{sid}/files/one-more.txt", content=b"x")
        assert upload.status_code == 413, upload.text
        assert api.delete(f"/v1/sandboxes/{sid}/files/many").status_code == 204
        assert_clean(fresh_server, api, sid)


# --- descriptors -------------------------------------------------------------------------------------------

FD_HOG = """
import errno, os, resource, time
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    reason = errno.errorcode[exc.errno]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 4, hard * 4))
    raised = "raised"
except (ValueError, OSError) as exc:
    raised = type(exc).__name__
time.sleep(1)
print(len(fds), reason, soft, hard, raised)
"""


def test_fd_exhaustion_stops_at_rlimit_nofile(
    server: ServerProcess, api: httpx.Client, box: str, neighbour: str
) -> None:
    put(api, box, "fds.py", FD_HOG)
    out = attack(server, api, box, neighbour, "python3 fds.py", timeout_seconds=30)
    assert out.result["status"] == "succeeded", out.result
    count, reason, soft, hard, raised = out.result["stdout"].split()
    assert reason == "EMFILE"
    assert soft == hard == "1024"  # the server's open_files setting, soft = hard
    assert int(count) < 1024
    assert raised != "raised"
    assert_clean(server, api, box)


# --- processes that try to outlive their run ---------------------------------------------------------------

DAEMONS = r"""
setsid python3 -c 'import signal, time
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT): signal.signal(s, signal.SIG_IGN)
time.sleep(300)' &
python3 -c '
import os, signal, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_IGN)
        time.sleep(300)  # keeps stdout and stderr open: the pipes never reach EOF on their own
    os._exit(0)
'
nohup sleep 300 >/dev/null 2>&1 &
echo started
"""


def test_daemons_and_term_ignorers_die_with_their_run(
    server: ServerProcess, api: httpx.Client, box: str, neighbour: str
) -> None:
    out = attack(server, api, box, neighbour, DAEMONS, timeout_seconds=30)
    assert (out.result["status"], out.result["stdout"]) == ("succeeded", "started\n"), out.result
    # The run ends when its command does, although a daemon still holds the output pipes.
    assert out.seconds < 15
    assert_clean(server, api, box)


STUBBORN = """
import signal, time
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
print("ignoring", flush=True)
while True:
    time.sleep(1)
"""


def test_sleep_past_the_clock_ignoring_sigterm_is_killed(
    server: ServerProcess, api: httpx.Client, box: str, neighbour: str
) -> None:
    put(api, box, "stubborn.py", STUBBORN)
    command = "trap '' TERM HUP INT; python3 stubborn.py & sleep 600; wait"
    out = attack(server, api, box, neighbour, command, timeout_seconds=2)
    assert out.result["status"] == "timed_out", out.result
    assert out.result["exit_code"] is None
    assert out.result["stdout"] == "ignoring\n"
    assert out.seconds < 2 + 10
    assert_clean(server, api, box)


def test_a_watchdog_that_fails_stops_the_run_rather_than_going_quiet() -> None:
    # The quota check is the runner's watchdog; if it ever raises (a workspace changing under the walk, a
    # bug), the run must be stopped, not left running unchecked for the rest of its clock.
    async def broken() -> str | None:
        raise OSError(errno.EAGAIN, "path kept changing during lookup")

    async def main() -> _Capture:
        capture = _Capture(limit=1024, on_output=None)
        await asyncio.wait_for(_watch(broken, capture), 5)
        return capture

    capture = asyncio.run(main())
    assert capture.limit_hit.is_set()
    assert capture.stop_reason is not None and "could not be checked" in capture.stop_reason
