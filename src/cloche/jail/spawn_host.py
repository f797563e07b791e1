"""Starting bwrap as the sandbox's host uid, inside the run's cgroup, under its rlimits.

What the layers declared on the ``BwrapCommand`` (``host_uid``, ``cgroup_procs_fds``, ``rlimits``) is done in the
child between fork and the exec of bwrap, in this order: drop to the host uid, join the cgroup, set the rlimits.

Two ways, one result:

* ``spawn_host.c`` (``cloche-spawn``), compiled at start-up: the server starts it with no ``preexec_fn`` and no
  ``user=``, so CPython uses ``vfork()`` (well under a millisecond, the event loop barely pauses); the helper does
  the three steps and execs bwrap. A failure comes back on a pipe that bwrap's exec closes, and the spawn raises
  ``JailUnavailable`` exactly as a failing ``preexec_fn`` does.
* where no compiler works, the same three steps as ``user=`` and a ``preexec_fn``, which makes CPython ``fork()``
  the whole server (10-30 ms on a busy host).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
from pathlib import Path

from cloche.errors import JailUnavailable
from cloche.jail.bwrap import BwrapCommand
from cloche.jail.c_programs import compile_once
from cloche.steps import mark

SPAWNER_SOURCE = Path(__file__).with_name("spawn_host.c")
_ERROR_BYTES = 4096


def build_spawner(bin_dir: Path) -> Path | None:
    """Compile ``cloche-spawn`` once per source version; None (the preexec_fn way) when no compiler works."""
    return compile_once(SPAWNER_SOURCE, bin_dir, "cloche-spawn")


async def spawn(
    cmd: BwrapCommand, bwrap: Path, argv: list[str], pass_fds: list[int], stdin: bool, spawner: Path | None
) -> asyncio.subprocess.Process:
    """Start ``argv`` (argv[0] is bwrap's name) as ``cmd.host_uid`` with pipes for stdout and stderr (and stdin
    when ``stdin``); raises ``JailUnavailable`` when the child could not become the jail."""
    if cmd.host_uid is None or cmd.host_uid == 0:
        raise JailUnavailable("a jail must run as a sandbox's host uid, never as root")
    pipes = {
        "stdin": subprocess.PIPE if stdin else subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
    }
    if spawner is None:
        return await _spawn_forked(cmd, bwrap, argv, pass_fds, pipes)
    read_end, write_end = os.pipe()
    fds = ",".join(str(fd) for fd in cmd.cgroup_procs_fds) or "-"
    limits = ",".join(f"{which}={value}" for which, value in cmd.rlimits) or "-"
    helper = [str(spawner), str(write_end), str(cmd.host_uid), fds, limits, "--", str(bwrap), *argv]
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *helper,
                pass_fds=[write_end, *pass_fds, *cmd.cgroup_procs_fds],
                close_fds=True,
                start_new_session=True,
                **pipes,  # type: ignore[arg-type]
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise JailUnavailable(f"could not start the jail's spawn helper {spawner}: {exc}") from exc
        mark("spawn: helper started (vfork)")
        os.close(write_end)
        write_end = -1
        error = await _read_to_eof(read_end)
        mark("spawn: bwrap exec'd (error pipe closed)")
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if error:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise JailUnavailable(f"could not start bubblewrap at {bwrap}: {error}")
    return proc


async def _read_to_eof(fd: int) -> str:
    """What the helper wrote before exiting; empty once bwrap's exec closed the pipe."""
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    eof = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, _ERROR_BYTES)
        except BlockingIOError:
            return
        if chunk:
            chunks.append(chunk)
        elif not eof.done():
            eof.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await eof
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks).decode(errors="replace")


async def _spawn_forked(
    cmd: BwrapCommand, bwrap: Path, argv: list[str], pass_fds: list[int], pipes: dict[str, int]
) -> asyncio.subprocess.Process:
    procs_fds, limits = tuple(cmd.cgroup_procs_fds), tuple(cmd.rlimits)

    def preexec() -> None:  # runs in the child after setuid: only a few raw syscalls
        for fd in procs_fds:
            os.write(fd, b"0")  # "0": the writing process; the fd was opened by root (see cgroups.py)
        for which, value in limits:
            resource.setrlimit(which, (value, value))

    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            executable=str(bwrap),
            pass_fds=pass_fds,
            user=cmd.host_uid,
            group=cmd.host_uid,
            extra_groups=[],
            close_fds=True,
            start_new_session=True,
            preexec_fn=preexec,
            **pipes,  # type: ignore[arg-type]
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise JailUnavailable(f"could not start bubblewrap at {bwrap}: {exc}") from exc
