"""Shared helpers for jail tests that run the real bubblewrap as an unprivileged host uid.

The invocation is the bwrap tier's own (``BwrapJail.confine``: namespaces, mounts, environment, seccomp, the sealed
root), so a filter or limit that holds here holds for real runs, and a layer removed from the runner is
removed here too. Only the cgroup and rlimits layers are left to each test, which applies its own.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytest

from cloche.jail.bwrap import BwrapCommand
from cloche.jail.bwrap_jail import BwrapJail
from cloche.jail.egress_layer import EgressHost
from cloche.jail.mounts import write_synthetic_etc
from cloche.jail.profile import JailProfile, RunSpec
from cloche.jail.supervisor import Children
from cloche.jail.tier import TierHost
from cloche.jail.tools import stage_tools

# A host uid outside the server's default pool (200000-259999) and the test servers' ranges (400000 and up),
# distinct per pytest process so two test runs on one host never share it.
HOST_UID = 300_000 + os.getpid() % 50_000
JAIL_UID = 1000
JAIL_PYTHON = "/usr/bin/python3"
# Every process keeps forking forever, retrying when the kernel says no.
FORK_BOMB = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""


@lru_cache(maxsize=1)
def _tools_root() -> Path:
    """Where sandbox uids can reach bwrap and the identity files, as the server does: the checkout may sit in /root."""
    root = Path(tempfile.mkdtemp(prefix="cloche-jail-tools-", dir="/tmp"))
    root.chmod(0o755)
    atexit.register(shutil.rmtree, root, True)
    return root


def bwrap() -> str:
    return str(stage_tools(_tools_root()).bwrap)


@lru_cache(maxsize=2)
def runner(*, seccomp_filter: bool = True) -> BwrapJail:
    """The real bwrap tier; its spawn (and the runner's cgroup) is never used here: ``confine`` stops before."""
    root = _tools_root()
    etc = write_synthetic_etc(root / "jail", JAIL_UID)
    egress = EgressHost(root)
    host = TierHost(Children(), etc, JAIL_UID, egress)
    return BwrapJail(host, bwrap=Path(bwrap()), seccomp_filter=seccomp_filter)


def jail_command(ws: Path, command: Sequence[str], *, seccomp: bool = True, uid: int = HOST_UID) -> BwrapCommand:
    """Layers 1-6 of the runner for ``command`` in workspace ``ws`` (no network)."""
    profile = JailProfile(name="exec", host_uid=uid, workspace=ws, workspace_writable=True)
    cmd = BwrapCommand()

    async def confine() -> None:
        async with contextlib.AsyncExitStack() as release:  # nothing is held without egress
            await runner(seccomp_filter=seccomp).confine(cmd, RunSpec(argv=tuple(command)), profile, release)

    asyncio.run(confine())
    return cmd


@lru_cache(maxsize=1)
def _unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the tests spawn bwrap as another host uid"
    if not Path(JAIL_PYTHON).is_file():
        return f"{JAIL_PYTHON} is missing"
    with workspace() as ws:
        done = run_jailed(["/usr/bin/true"], ws, seccomp=False, timeout=30)
    if done.returncode != 0:
        return f"bwrap cannot build a jail here (unprivileged user namespaces?): {done.stderr.strip()}"
    return None


def require_jail() -> None:
    reason = _unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@contextmanager
def workspace(uid: int = HOST_UID) -> Iterator[Path]:
    """A directory the sandbox uid owns, outside pytest's root-only tmp tree (bwrap must reach it)."""
    path = Path(tempfile.mkdtemp(prefix="cloche-jail-test-", dir="/tmp"))
    try:
        os.chown(path, uid, uid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def spawn_jailed(
    command: Sequence[str],
    ws: Path,
    *,
    seccomp: bool = True,
    uid: int = HOST_UID,
    preexec: Callable[[], None] | None = None,
    jail: bool = True,
) -> subprocess.Popen[str]:
    """Start ``command`` as ``uid`` (in the runner's jail unless ``jail`` is False), the way the runner does."""
    if not jail:
        argv, fds, executable = list(command), [], None
    else:
        cmd = jail_command(ws, command, seccomp=seccomp, uid=uid)
        argv, args_fd = cmd.argv(tuple(command))
        fds, executable = [args_fd, *cmd.pass_fds], bwrap()
    try:
        return subprocess.Popen(
            argv,
            executable=executable,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            user=uid,
            group=uid,
            extra_groups=[],
            pass_fds=fds,
            close_fds=True,
            start_new_session=True,
            preexec_fn=preexec,
            cwd=ws,
        )
    finally:
        for fd in fds:
            os.close(fd)


def run_jailed(
    command: Sequence[str],
    ws: Path,
    *,
    seccomp: bool = True,
    uid: int = HOST_UID,
    preexec: Callable[[], None] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    with spawn_jailed(command, ws, seccomp=seccomp, uid=uid, preexec=preexec) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def python(code: str, *args: str) -> list[str]:
    """argv for the jail's system Python; -I keeps the host environment and user site out."""
    return [JAIL_PYTHON, "-I", "-c", code, *args]
