"""Run one command in the jail: compose the layers, spawn, stream output under caps, enforce the clock.

The layers are applied in one fixed order, readable top to bottom in ``Runner._compose``:
identity and namespaces -> filesystem -> environment. Later layers (seccomp, cgroups, rlimits, egress)
slot into the same list.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cloche.errors import JailUnavailable
from cloche.jail import mounts, namespaces, supervisor
from cloche.jail.bwrap import BwrapCommand, bwrap_path
from cloche.jail.profile import JailProfile, RunSpec

log = logging.getLogger("cloche.jail")

StreamName = Literal["stdout", "stderr"]
OutputCallback = Callable[[StreamName, str], Awaitable[None]]
Outcome = Literal["succeeded", "failed", "timed_out", "output_limit", "killed"]

BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
    # Unbuffered output so streaming shows lines as they are printed.
    "PYTHONUNBUFFERED": "1",
}
READ_CHUNK = 65536


@dataclass
class RunResult:
    status: Outcome
    exit_code: int | None
    stdout: str
    stderr: str
    output: str
    truncated: bool
    duration_ms: int
    error: str | None = None


@dataclass
class _Capture:
    """Output of one run: per-stream text plus the interleaved terminal view, each capped."""

    limit: int
    on_output: OutputCallback | None
    streams: dict[str, list[str]] = field(default_factory=lambda: {"stdout": [], "stderr": []})
    counts: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    interleaved: list[str] = field(default_factory=list)
    truncated: bool = False
    limit_hit: asyncio.Event = field(default_factory=asyncio.Event)

    async def feed(self, name: StreamName, reader: asyncio.StreamReader) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := await reader.read(READ_CHUNK):
            if self.truncated:
                continue  # keep draining so the pipe reaches EOF once the jail is killed
            room = self.limit - self.counts[name]
            if len(chunk) > room:
                chunk = chunk[: max(room, 0)]
                self.truncated = True
                self.limit_hit.set()
            self.counts[name] += len(chunk)
            text = decoder.decode(chunk)
            if text:
                self._keep(name, text)
                if self.on_output is not None:
                    await self.on_output(name, text)
        tail = decoder.decode(b"", final=True)
        if tail and not self.truncated:
            self._keep(name, tail)

    def _keep(self, name: StreamName, text: str) -> None:
        self.streams[name].append(text)
        self.interleaved.append(text)


class Runner:
    """Spawns bwrap as the sandbox's host uid; nothing is ever run outside it."""

    def __init__(self, synthetic_etc: Path, sandbox_uid: int) -> None:
        self._etc = synthetic_etc
        self._sandbox_uid = sandbox_uid
        self._bwrap = bwrap_path()
        self._live: set[int] = set()  # outer bwrap pids the event loop is waiting for
        supervisor.become_subreaper()

    def reap(self) -> int:
        """Reap jail inits orphaned by finished runs (also called periodically by the server)."""
        return supervisor.reap_orphans(self._live)

    def _compose(self, spec: RunSpec, profile: JailProfile) -> BwrapCommand:
        cmd = BwrapCommand()
        namespaces.apply(cmd, profile, self._sandbox_uid)  # 1. identity, user/pid/ipc/uts/net namespaces
        mounts.apply(cmd, profile, self._etc)  # 2. filesystem view
        cmd.env = {**BASE_ENV, **spec.env}  # 3. a cleared, explicit environment
        cmd.args += ["--chdir", spec.cwd]
        return cmd

    async def run(
        self, spec: RunSpec, profile: JailProfile, on_output: OutputCallback | None = None
    ) -> RunResult:
        cmd = self._compose(spec, profile)
        argv, args_fd = cmd.argv(spec.argv)
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                executable=str(self._bwrap),
                stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=[args_fd, *cmd.pass_fds],
                user=cmd.host_uid,
                group=cmd.host_uid,
                extra_groups=[],
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise JailUnavailable(f"could not start bubblewrap at {self._bwrap}: {exc}") from exc
        finally:
            os.close(args_fd)
        capture = _Capture(spec.output_limit_bytes, on_output)
        self._live.add(proc.pid)
        try:
            return await self._supervise(proc, spec, capture, started)
        finally:
            self._live.discard(proc.pid)
            self.reap()

    async def _supervise(
        self, proc: asyncio.subprocess.Process, spec: RunSpec, capture: _Capture, started: float
    ) -> RunResult:
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(capture.feed("stdout", proc.stdout)),
            asyncio.create_task(capture.feed("stderr", proc.stderr)),
        ]
        stdin_task = asyncio.create_task(self._write_stdin(proc, spec.stdin))
        status: Outcome | None = None
        error: str | None = None
        try:
            limit: asyncio.Future[Any] = asyncio.create_task(capture.limit_hit.wait())
            readers_done: asyncio.Future[Any] = asyncio.gather(*readers)
            finished, _ = await asyncio.wait(
                [readers_done, limit], timeout=spec.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            limit.cancel()
            if not finished:
                status, error = "timed_out", f"wall clock of {spec.timeout_seconds:g}s exceeded"
            if capture.truncated and status is None:
                status = "output_limit"
                error = f"output exceeded {spec.output_limit_bytes} bytes on one stream"
            if status is not None:
                self._kill(proc)
            remaining = max(spec.timeout_seconds - (time.monotonic() - started), 0) + 5
            await asyncio.wait_for(proc.wait(), timeout=remaining)
        except asyncio.CancelledError:
            # The client went away: the run dies with the request.
            self._kill(proc)
            await proc.wait()
            raise
        except TimeoutError:
            # Streams closed but the process lingers past the clock.
            self._kill(proc)
            await proc.wait()
            status = status or "timed_out"
        finally:
            for task in [*readers, stdin_task]:
                task.cancel()
            for task in [*readers, stdin_task]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            _close_pipes(proc)
        duration_ms = int((time.monotonic() - started) * 1000)
        code = proc.returncode
        exit_code = None if status is not None else _exit_code(code)
        if status is None:
            status = "succeeded" if exit_code == 0 else "failed"
        return RunResult(
            status=status,
            exit_code=exit_code,
            stdout="".join(capture.streams["stdout"]),
            stderr="".join(capture.streams["stderr"]),
            output="".join(capture.interleaved),
            truncated=capture.truncated,
            duration_ms=duration_ms,
            error=error,
        )

    @staticmethod
    async def _write_stdin(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
        if proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if data:
                proc.stdin.write(data)
                await proc.stdin.drain()
            proc.stdin.close()

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        """SIGKILL bwrap's whole session; the jail's pid 1 dies with it and takes every descendant along."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


def _exit_code(code: int | None) -> int | None:
    if code is None:
        return None
    return 128 - code if code < 0 else code
