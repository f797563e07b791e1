"""Rlimits applied in preexec_fn bind the real bwrap and everything it runs."""

from __future__ import annotations

import json
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from _bwrap import HOST_UID, python, require_jail, run_jailed, workspace

from cloche.errors import InvalidRequest
from cloche.jail.rlimits import Rlimits

# Its own uid: RLIMIT_NPROC counts every task of the uid on the host, so nothing else may share it.
NPROC_UID = HOST_UID + 50_000


@pytest.fixture
def ws() -> Iterator[Path]:
    require_jail()
    with workspace() as path:
        yield path


@pytest.mark.parametrize("fsize_bytes, nofile, nproc", [(0, 64, 64), (1, 2, 64), (1, 64, 1)])
def test_invalid_limits_are_refused(fsize_bytes: int, nofile: int, nproc: int) -> None:
    with pytest.raises(InvalidRequest):
        Rlimits(fsize_bytes=fsize_bytes, nofile=nofile, nproc=nproc)


def test_limits_are_visible_and_hard_inside_the_jail(ws: Path) -> None:
    limits = Rlimits(fsize_bytes=1 << 20, nofile=64, nproc=200, core=0)
    code = """
import json, resource
names = ["RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE"]
seen = {n: resource.getrlimit(getattr(resource, n)) for n in names}
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    seen["raised"] = True
except ValueError:
    seen["raised"] = False
print(json.dumps(seen))
"""
    done = run_jailed(python(code), ws, preexec=limits.preexec_apply)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["RLIMIT_FSIZE"] == [1 << 20, 1 << 20]
    assert seen["RLIMIT_NOFILE"] == [64, 64]
    assert seen["RLIMIT_NPROC"] == [200, 200]
    assert seen["RLIMIT_CORE"] == [0, 0]
    assert seen["raised"] is False


def test_file_size_and_descriptor_limits_bite(ws: Path) -> None:
    limits = Rlimits(fsize_bytes=1 << 20, nofile=32, nproc=200)
    code = """
import errno, os
try:
    with open("/tmp/big", "wb") as f:
        f.write(b"x" * (2 << 20))
except OSError as e:
    print("fsize", errno.errorcode[e.errno])
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    print("nofile", errno.errorcode[e.errno], len(fds) < 32)
"""
    done = run_jailed(python(code), ws, preexec=limits.preexec_apply)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["fsize EFBIG", "nofile EMFILE True"]


def test_nproc_caps_threads_and_processes_of_the_uid() -> None:
    require_jail()
    limits = Rlimits(fsize_bytes=1 << 20, nofile=256, nproc=12)
    code = """
import threading, time
stop = threading.Event()
started = 0
try:
    for _ in range(100):
        threading.Thread(target=stop.wait, daemon=True).start()
        started += 1
except RuntimeError:
    pass
stop.set()
print(started)
"""
    with workspace(NPROC_UID) as ws:
        done = run_jailed(python(code), ws, uid=NPROC_UID, preexec=limits.preexec_apply)
    assert done.returncode == 0, done.stderr
    # bwrap's monitor, its init and Python's main thread count too.
    assert 0 < int(done.stdout) <= 12 - 3


def test_pairs_cover_every_field() -> None:
    limits = Rlimits(fsize_bytes=5, nofile=20, nproc=7, core=0)
    assert dict(limits.pairs()) == {
        resource.RLIMIT_FSIZE: 5,
        resource.RLIMIT_NOFILE: 20,
        resource.RLIMIT_NPROC: 7,
        resource.RLIMIT_CORE: 0,
    }


def test_a_command_killed_by_a_signal_in_the_jail_exits_128_plus_the_signal(ws: Path) -> None:
    """What installer_error reads a signal from (an installer killed for a too-large file: SIGXFSZ)."""
    done = run_jailed(["/bin/sh", "-c", "kill -XFSZ $$"], ws)
    assert done.returncode == 128 + signal.SIGXFSZ
