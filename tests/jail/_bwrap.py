"""Shared helpers for jail tests that run the real bubblewrap as an unprivileged host uid.

The invocation mirrors what the runner builds (user/pid/net/... namespaces, ``--disable-userns``, no
capabilities, read-only ``/usr``, private ``/proc``, ``/dev`` and ``/tmp``, the workspace at
``/sandbox``), so a filter or limit that holds here holds for real runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytest

from cloche.jail.seccomp import seccomp_fd
from cloche.jail.tools import stage_tools

# Host uids nobody else on a test machine uses; each sandbox gets its own in production.
HOST_UID = 200123
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
def bwrap() -> str:
    """bwrap staged where sandbox uids can reach it, as the server does: the checkout may sit in /root."""
    root = Path(tempfile.mkdtemp(prefix="cloche-jail-tools-", dir="/tmp"))
    root.chmod(0o755)
    atexit.register(shutil.rmtree, root, True)
    return str(stage_tools(root).bwrap)


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


def bwrap_argv(ws: Path, command: Sequence[str], *, seccomp: int | None = None) -> list[str]:
    argv = [bwrap(), "--unshare-all", "--unshare-user", "--disable-userns", "--uid", "1000", "--gid", "1000"]
    argv += ["--cap-drop", "ALL", "--die-with-parent", "--new-session", "--clearenv"]
    argv += ["--setenv", "PATH", "/usr/bin:/bin", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64"):
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", str(host.readlink()), f"/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", str(ws), "/sandbox"]
    argv += ["--chdir", "/sandbox"]
    if seccomp is not None:
        argv += ["--seccomp", str(seccomp)]
    return [*argv, "--", *command]


def spawn_jailed(
    command: Sequence[str],
    ws: Path,
    *,
    seccomp: bool = True,
    uid: int = HOST_UID,
    preexec: Callable[[], None] | None = None,
    jail: bool = True,
) -> subprocess.Popen[str]:
    """Start ``command`` as ``uid`` (in bwrap unless ``jail`` is False), the way the runner does."""
    fd = seccomp_fd() if seccomp and jail else None
    argv = bwrap_argv(ws, command, seccomp=fd) if jail else list(command)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            user=uid,
            group=uid,
            extra_groups=[],
            pass_fds=[] if fd is None else [fd],
            close_fds=True,
            preexec_fn=preexec,
            cwd=ws,
        )
    finally:
        if fd is not None:
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
