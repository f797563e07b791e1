"""The warm interpreter (service/warm.py, jail/zygote_*.py) through a real server: each forked run behaves as a
fresh ``python3 main.py`` in the sandbox's jail, leaves nothing the next run sees, and whenever the zygote cannot
serve a run, the run starts cold and its record says why.

A local wheel folder stands in for the index; ``six`` is the pre-imported package.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloche import Client
from cloche.models import ExecResult
from cloche.sdk.client import SandboxHandle
from conftest import ServerProcess, pool_processes, running_server

# What a fresh interpreter shows of itself: the same in a cold and a warm run.
IDENTITY = """\
import os, sys, six
print(__name__, sys.argv, os.getcwd(), sys.path[0], os.environ.get("GREETING"), sys.stdin.read())
print(sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
print(sys.stdout.encoding, sys.stdout.errors, sys.stderr.errors, sys.flags.dont_write_bytecode)
"""


WARM = {"CLOCHE_WARM_INTERPRETER": "true"}  # test servers start runs cold unless told otherwise (conftest.py)


@pytest.fixture(scope="module")
def registry_server(offline_wheels: Path) -> Iterator[ServerProcess]:
    """A server with the warm interpreter on, whose Python installs come from the offline wheels."""
    with running_server({"CLOCHE_PYTHON_WHEEL_DIR": str(offline_wheels), **WARM}) as srv:
        yield srv


def _warm(box: SandboxHandle, main: str, seconds: float = 90.0, runs: int = 2, **options: object) -> ExecResult:
    """Exec until the sandbox's warm interpreter forks ``runs`` runs in a row (the first exec installs and starts it;
    the environment's bytecode companion, landing a moment later, changes the environment once more)."""
    box.write("main.py", main)
    deadline = time.monotonic() + seconds
    box.exec(filename="main.py", **options)  # installs what it needs, if anything
    while "PYTHONPYCACHEPREFIX=" not in box.exec(command="env").stdout:  # the bytecode companion has landed
        assert time.monotonic() < deadline, "the environment's bytecode companion never landed"
        time.sleep(1)
    streak = 0
    while True:
        result = box.exec(filename="main.py", **options)
        streak = streak + 1 if result.warm is not None and result.warm.used else 0
        if streak == runs:
            return result
        assert time.monotonic() < deadline, f"never ran warm: {result.warm} {result.output}"
        if not streak:
            time.sleep(0.5)


@pytest.fixture
def box(cloche: Client) -> Iterator[SandboxHandle]:
    with cloche.create() as sandbox:
        sandbox.write("requirements.txt", "six==1.16.0\n")
        yield sandbox


def test_a_forked_run_is_what_a_cold_run_is(box: SandboxHandle) -> None:
    options = {"args": ["x", "y z"], "env": {"GREETING": "hi"}, "stdin": "from stdin"}
    box.write("main.py", IDENTITY)
    cold = box.exec(filename="main.py", **options)
    assert cold.warm is not None and not cold.warm.used, cold.warm
    warm = _warm(box, IDENTITY, **options)
    assert warm.status == cold.status == "succeeded", warm.output
    assert warm.stdout == cold.stdout.removeprefix("Installing six==1.16.0...\n")
    assert warm.stdout.startswith("__main__ ['main.py', 'x', 'y z'] /sandbox /sandbox hi from stdin\n[0, 1, 2, 3]\n")


def test_exit_codes_tracebacks_and_statuses_match_a_cold_run(box: SandboxHandle) -> None:
    _warm(box, "import six\n")
    box.write("main.py", "import six, sys\nsys.exit(3)\n")
    failed = box.exec(filename="main.py")
    assert failed.warm is not None and failed.warm.used
    assert (failed.status, failed.exit_code) == ("failed", 3)
    box.write("main.py", "import six\n\ndef f():\n    raise ValueError('boom')\n\nf()\n")
    raised = box.exec(filename="main.py")
    assert (raised.status, raised.exit_code) == ("failed", 1)
    assert raised.stderr.startswith('Traceback (most recent call last):\n  File "/sandbox/main.py", line 6')
    assert "runpy" not in raised.stderr and raised.stderr.endswith("ValueError: boom\n")
    box.write("main.py", "import six, os, signal\nprint('bye', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    killed = box.exec(filename="main.py")
    assert (killed.status, killed.exit_code, killed.stdout) == ("failed", 128 + signal.SIGKILL, "bye\n")
    box.write("main.py", "import six, time\nprint('start', flush=True)\ntime.sleep(60)\n")
    slow = box.exec(filename="main.py", timeout_seconds=2)
    assert (slow.status, slow.stdout, slow.warm and slow.warm.used) == ("timed_out", "start\n", True), slow.warm
    box.write("main.py", "import six\nwhile True:\n    print('x' * 1000)\n")
    flood = box.exec(filename="main.py", limits={"output_bytes": 10_000})
    assert (flood.status, flood.truncated) == ("output_limit", True)
    box.write("main.py", "import six\nhog = []\nwhile True:\n    hog.append(bytearray(16 << 20))\n")
    hog = box.exec(filename="main.py", limits={"memory_mb": 128})
    assert hog.status == "oom_killed", hog.output
    box.write("main.py", "import six\nprint('fine')\n")
    after = box.exec(filename="main.py")
    assert after.stdout == "fine\n" and after.warm is not None and after.warm.used


def test_a_run_leaves_nothing_the_next_run_sees(box: SandboxHandle) -> None:
    leave = """\
import builtins, ctypes, os, random, subprocess, sys, types, six
six.poked = "monkeypatched"
builtins.leaked = "global"
sys.modules["planted"] = types.ModuleType("planted")
os.environ["LEAKED"] = "1"
open("/tmp/left-behind", "w").write("x")
os.makedirs("/tmp/locked/inner")
open("/tmp/locked/inner/file", "w").write("x")
os.chmod("/tmp/locked/inner", 0)
os.chmod("/tmp/locked", 0)
open("/dev/shm/left-behind", "w").write("x")
libc = ctypes.CDLL(None)
print("shm", libc.shmget(0x5EED, 4096, 0o1600) >= 0)
subprocess.Popen(["sleep", "300"], start_new_session=True)
print("seed", random.random())
"""
    look = """\
import builtins, ctypes, os, random, sys, six
libc = ctypes.CDLL(None)
print(getattr(six, "poked", None), getattr(builtins, "leaked", None), "planted" in sys.modules,
      os.environ.get("LEAKED"), os.listdir("/tmp"), os.listdir("/dev/shm"), libc.shmget(0x5EED, 0, 0) >= 0,
      [p for p in os.listdir("/proc") if p.isdigit() and "sleep" in open(f"/proc/{p}/cmdline").read()])
print("seed", random.random())
"""
    first = _warm(box, leave)
    assert "shm True" in first.stdout, first.output
    box.write("main.py", look)
    second = box.exec(filename="main.py")
    assert second.warm is not None and second.warm.used, second.warm
    assert second.stdout.splitlines()[0] == "None None False None [] [] False []", second.output
    seeds = {first.stdout.split("seed ")[1], second.stdout.split("seed ")[1]}
    assert len(seeds) == 2, "random was not reseeded after fork"


def test_a_workspace_module_named_like_a_preimported_one_runs_cold(box: SandboxHandle) -> None:
    """``json`` is loaded in the zygote; a cold ``import json`` would find the workspace's json.py first."""
    _warm(box, "import six, json\nprint(json.__file__)\n")
    box.write("json.py", "__file__ = 'the workspace json'\n")
    shadowed = box.exec(filename="main.py")
    assert shadowed.warm is not None and not shadowed.warm.used
    assert "named like pre-imported" in (shadowed.warm.reason or "") and "json" in (shadowed.warm.reason or "")
    assert shadowed.stdout == "the workspace json\n"
    box.write("six.py", "__file__ = 'the workspace six'\n")  # now a local module to the detection as well
    box.write("main.py", "import six\nprint(six.__file__)\n")
    assert box.exec(filename="main.py").stdout == "the workspace six\n"


def test_changed_needs_restart_it_and_a_run_with_secrets_or_own_startup_variables_stays_cold(
    box: SandboxHandle,
) -> None:
    _warm(box, "import six\n")
    own = box.exec(filename="main.py", env={"PYTHONHASHSEED": "7"})
    assert own.warm is not None and not own.warm.used and "start-up variables" in (own.warm.reason or "")
    box.write("requirements.txt", "six==1.15.0\n")
    changed = box.exec(filename="main.py")
    assert changed.warm is not None and not changed.warm.used and "changed" in (changed.warm.reason or "")
    again = _warm(box, "import six\nprint(six.__version__)\n")
    assert again.stdout == "1.15.0\n"


def test_an_unhealthy_zygote_means_a_cold_run_that_says_so(box: SandboxHandle, registry_server: ServerProcess) -> None:
    _warm(box, "import six\nprint('ok')\n")
    zygotes = _zygote_pids(registry_server)
    assert len(zygotes) == 1, zygotes
    os.kill(zygotes[0], signal.SIGSTOP)  # alive but answering nothing
    try:
        stuck = box.exec(filename="main.py")
    finally:
        for pid in zygotes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert stuck.status == "succeeded" and stuck.stdout == "ok\n"
    assert stuck.warm is not None and not stuck.warm.used and "unhealthy" in (stuck.warm.reason or "")
    record = box.run(stuck.run_id)
    assert record.warm is not None and "unhealthy" in (record.warm.reason or "")
    assert zygotes[0] not in _zygote_pids(registry_server)  # the stuck one was stopped (a fresh one may start)
    parricide = _warm(box, "import six, os, time\nos.kill(os.getppid(), 9)\ntime.sleep(5)\n", runs=1)
    assert parricide.status == "failed" and parricide.error == "the warm interpreter stopped during the run"


def _zygote_pids(server: ServerProcess) -> list[int]:
    """The warm interpreters of this server's sandboxes (processes of its uid range running the zygote), not
    the children they forked ahead for the next run (the same command line, a zygote for a parent)."""
    low, high = server.uid_range
    found = [pid for pid in pool_processes(low, high) if _cmdline(pid).startswith(b"python3\0/opt/cloche/zygote.py\0")]
    return [pid for pid in found if _parent(pid) not in found]


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_off_idle_and_deleted_sandboxes_keep_no_zygote(offline_wheels: Path) -> None:
    env = {"CLOCHE_PYTHON_WHEEL_DIR": str(offline_wheels), "CLOCHE_WARM_IDLE_SECONDS": "3", **WARM}
    with running_server(env) as srv, srv.client() as client:
        box = client.create()
        box.write("requirements.txt", "six==1.16.0\n")
        _warm(box, "import six\n")
        time.sleep(8)  # idle past 3 s: stopped
        assert not _zygote_pids(srv)
        idle = box.exec(filename="main.py")
        assert idle.warm is not None and not idle.warm.used
        _warm(box, "import six\n")
        box.delete()
        assert not _zygote_pids(srv)
        low, high = srv.uid_range
        left = pool_processes(low, high - 1)  # the sandbox uids (the last one is the builder's)
        assert not left, [_cmdline(p) for p in left]
    off = {"CLOCHE_PYTHON_WHEEL_DIR": str(offline_wheels), "CLOCHE_WARM_INTERPRETER": "false"}
    with running_server(off) as srv, srv.client() as client:
        box = client.create()
        box.write("requirements.txt", "six==1.16.0\n")
        box.write("main.py", "import six\n")
        for _ in range(3):
            result = box.exec(filename="main.py")
            assert result.warm is not None and not result.warm.used and "off" in (result.warm.reason or "")
        assert not _zygote_pids(srv)


@pytest.mark.network
def test_numpy_is_reseeded_and_its_blas_threads_work_after_fork() -> None:
    """numpy's global generator gets a fresh seed in each forked run, and OpenBLAS (whose threads the fork did
    not copy) still multiplies large matrices on several threads."""
    main = (
        "import numpy as np\n"
        "print(np.random.rand())\n"
        "a = np.random.rand(500, 500)\n"
        "print(bool(np.abs(a @ np.linalg.inv(a) - np.eye(500)).max() < 1e-6))\n"
    )
    with running_server(WARM) as srv, srv.client() as client, client.create() as box:
        box.write("requirements.txt", "numpy\n")
        first = _warm(box, main, seconds=600, limits={"cpu_cores": 2})
        second = box.exec(filename="main.py", limits={"cpu_cores": 2})
    assert second.warm is not None and second.warm.used, second.warm
    assert first.stdout.split()[1] == second.stdout.split()[1] == "True", second.output
    assert first.stdout.split()[0] != second.stdout.split()[0]
