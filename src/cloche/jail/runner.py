"""Run one command in a jail: pick the sandbox's tier, apply it, stream output under caps, enforce the clock.

``Runner.run`` is the same for every tier (``tier.py``); what differs is the tier's own checklist:

* the run's cgroup (``cgroups.py``): memory incl. swap, pids, CPU; created here, joined by the tier's child
  before it execs, so the jail and everything under it are bound by it whatever the tier
* the tier (``Jail.start``): its numbered layers and its spawn; ``bwrap_jail.py`` (namespaces, mounts,
  seccomp on the host kernel) or ``gvisor_jail.py`` (the same view, served by gVisor's kernel)
* the run itself: output read from both pipes under the caps, the wall clock and the watchdog, the kill of
  the tier's session and of everything in the cgroup, the OOM and usage read from the cgroup

What a layer holds (the egress proxy, the cgroup, the fds) is released in reverse order when the run ends.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cloche.errors import IsolationUnavailable
from cloche.jail import cgroups
from cloche.jail.cgroups import Cgroups, RunCgroup
from cloche.jail.environment import BASE_ENV
from cloche.jail.profile import JailProfile, ResourceLimits, RunSpec
from cloche.jail.supervisor import Children
from cloche.jail.tier import Isolation, Jail
from cloche.jail.zygote_host import ColdInstead, ForkedProcess, Waiting, ZygoteClient
from cloche.steps import mark

if TYPE_CHECKING:
    from cloche.jail.egress_layer import EgressSession

log = logging.getLogger("cloche.jail")

StreamName = Literal["stdout", "stderr"]
OutputCallback = Callable[[StreamName, str], Awaitable[None]]
Outcome = Literal["succeeded", "failed", "timed_out", "output_limit", "oom_killed", "killed"]

READ_CHUNK = 65536
Jailed = asyncio.subprocess.Process | ForkedProcess  # a spawned jail, or a run the warm interpreter forked


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
    egress_denied: list[str] = field(default_factory=list)
    memory_peak_bytes: int | None = None
    cpu_seconds: float | None = None
    warm: dict[str, Any] | None = None  # whether a warm interpreter forked the run, and why not (service/warm.py)


@dataclass
class _Capture:
    """Output of one run: per-stream text plus the interleaved terminal view, each capped."""

    limit: int | None  # None: stream to on_output only, keep nothing, never stop the run for its output
    on_output: OutputCallback | None
    streams: dict[str, list[str]] = field(default_factory=lambda: {"stdout": [], "stderr": []})
    counts: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    interleaved: list[str] = field(default_factory=list)
    truncated: bool = False
    full: set[str] = field(default_factory=set)  # streams cut at the cap; the others keep what was already written
    limit_hit: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None

    async def feed(self, name: StreamName, reader: asyncio.StreamReader) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := await reader.read(READ_CHUNK):
            if self.limit is None:
                if (text := decoder.decode(chunk)) and self.on_output is not None:
                    await self.on_output(name, text)
                continue
            if name in self.full:
                continue  # keep draining so the pipe reaches EOF once the jail is killed
            room = self.limit - self.counts[name]
            if len(chunk) > room:
                chunk = chunk[: max(room, 0)]
                self.full.add(name)
                self.truncated = True
                self.limit_hit.set()
            self.counts[name] += len(chunk)
            text = decoder.decode(chunk)
            if text:
                self._keep(name, text)
                if self.on_output is not None:
                    await self.on_output(name, text)
        tail = decoder.decode(b"", final=True)
        if tail and self.limit is None and self.on_output is not None:
            await self.on_output(name, tail)
        elif tail and name not in self.full:
            self._keep(name, tail)

    def _keep(self, name: StreamName, text: str) -> None:
        self.streams[name].append(text)
        self.interleaved.append(text)


class Runner:
    """Runs every piece of untrusted code, in the tier its profile names; nothing is ever run outside a jail."""

    def __init__(self, cgroups: Cgroups, children: Children, tiers: Sequence[Jail]) -> None:
        self._cgroups = cgroups
        self._children = children
        self._tiers: dict[Isolation, Jail] = {tier.isolation: tier for tier in tiers}
        self._retry_scheduled = False

    def tier(self, isolation: Isolation) -> Jail:
        return self._tiers[isolation]

    async def require(self, isolation: Isolation) -> None:
        """Raise ``IsolationUnavailable`` (422) when ``isolation`` cannot run jails here; never falls back."""
        tier = self._tiers.get(isolation)
        reason = f"this server has no {isolation!r} isolation tier" if tier is None else await tier.unavailable()
        if reason is not None:
            raise IsolationUnavailable(f"isolation {isolation!r} is not available on this server: {reason}")

    def reap(self) -> int:
        """Reap jail inits orphaned by finished runs (also called periodically by the server)."""
        return self._children.reap()

    async def run(
        self,
        spec: RunSpec,
        profile: JailProfile,
        on_output: OutputCallback | None = None,
        on_started: Callable[[EgressSession | None], None] | None = None,
    ) -> RunResult:
        """The cgroup, then the profile's tier (its own checklist and spawn), then the run under its caps.
        ``on_started`` is told the run's egress session once it runs (a warm interpreter's runs share it)."""
        await self.require(profile.isolation)
        tier = self._tiers[profile.isolation]
        async with contextlib.AsyncExitStack() as release:  # what the layers hold, released last first
            limits = tier.cgroup_limits(spec.limits)
            group = cgroups.apply(self._cgroups, limits, release)  # the run's cgroup, joined before exec
            mark("runner: run cgroup created")
            started = time.monotonic()
            try:
                jail = await tier.start(spec, profile, group, release)  # the tier's checklist and spawn
            finally:
                group.close_fds()
            if on_started is not None:
                on_started(jail.egress)
            try:
                result = await self._supervise(
                    jail.process, spec, _Capture(spec.output_limit_bytes, on_output), started, group
                )
            finally:
                self._children.done(jail.process.pid)
            _read_group(result, group, spec)
            mark("runner: cgroup read (OOM, peak, CPU)")
        mark("runner: cgroup and layers released")
        if self._cgroups.pending:
            self._retry_groups()
        if jail.egress is not None:
            result.egress_denied = jail.egress.denied_hosts()
        return result

    async def fork_ahead(self, zygote: ZygoteClient, limits: ResourceLimits) -> None:
        """Have the sandbox's warm interpreter fork the child for its next run now, in a cgroup of its own made
        for ``limits`` (``zygote.waiting``); raises ``ZygoteGone`` when it cannot."""
        await self.discard_ahead(zygote)
        zygote.waiting = await self._fork(zygote, limits)

    async def _fork(self, zygote: ZygoteClient, limits: ResourceLimits) -> Waiting:
        release = contextlib.AsyncExitStack()
        try:
            group = cgroups.apply(self._cgroups, limits, release)
            group.close_fds()  # the server moves the forked child in itself (RunCgroup.attach)
            mark("runner: run cgroup created")
            pid, conn = await zygote.fork(group)
        except BaseException:
            await release.aclose()
            raise
        return Waiting(pid, conn, group, limits, release)

    @staticmethod
    async def discard_ahead(zygote: ZygoteClient) -> None:
        """Let go of the child forked ahead, if any (its cgroup is killed and removed)."""
        waiting, zygote.waiting = zygote.waiting, None
        if waiting is not None:
            await waiting.discard()

    async def run_forked(
        self, spec: RunSpec, zygote: ZygoteClient, on_output: OutputCallback | None = None
    ) -> RunResult | ColdInstead:
        """``spec`` (``python3 SCRIPT ARGS...``) run by a child of the sandbox's warm interpreter, which runs in
        the sandbox's own jail (the tier's layers are its): the child forked ahead when its limits are the
        run's, else one forked now; either way it is in a cgroup of its own before its first instruction, with
        the same pipes, caps, clock and statuses as ``run``. Raises ``ZygoteGone`` when the interpreter cannot
        serve it (nothing of the run has started then)."""
        waiting, zygote.waiting = zygote.waiting, None
        if waiting is not None and waiting.limits != spec.limits:
            await waiting.discard()
            waiting = None
        if waiting is None:
            waiting = await self._fork(zygote, spec.limits)
        async with waiting.release as release:
            release.callback(waiting.conn.close)
            group = waiting.group
            started = time.monotonic()
            env = {**BASE_ENV, **spec.env, **zygote.extra_env}
            proc = await zygote.start(waiting, spec.argv[1:], env, spec.cwd, spec.stdin is not None)
            if isinstance(proc, ColdInstead):
                return proc
            release.callback(proc.close)
            denied_before = set(zygote.denied_hosts())
            result = await self._supervise(proc, spec, _Capture(spec.output_limit_bytes, on_output), started, group)
            _read_group(result, group, spec)
            mark("runner: cgroup read (OOM, peak, CPU)")
            result.egress_denied = [h for h in zygote.denied_hosts() if h not in denied_before]
            if proc.zygote_failed and result.status in ("failed", "succeeded"):
                result.error = "the warm interpreter stopped during the run"
        mark("runner: cgroup released")
        if self._cgroups.pending:
            self._retry_groups()
        return result

    def _retry_groups(self) -> None:
        """A group a run could not remove at once (its last task slow to exit under load) is retried every
        second until it is gone, so no run's cgroup outlives it for long."""
        self.reap()  # an adopted jail init that is not reaped yet can keep its group busy
        self._cgroups.retry_pending()
        if self._cgroups.pending and not self._retry_scheduled:
            self._retry_scheduled = True
            asyncio.get_running_loop().call_later(1.0, self._retry_later)

    def _retry_later(self) -> None:
        self._retry_scheduled = False
        self._retry_groups()

    async def _supervise(
        self,
        proc: Jailed,
        spec: RunSpec,
        capture: _Capture,
        started: float,
        group: RunCgroup,
    ) -> RunResult:
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(capture.feed("stdout", proc.stdout)),
            asyncio.create_task(capture.feed("stderr", proc.stderr)),
        ]
        stdin_task = asyncio.create_task(self._write_stdin(proc, spec.stdin))
        if spec.watchdog is not None:
            readers.append(asyncio.create_task(_watch(spec.watchdog, capture)))
        status: Outcome | None = None
        error: str | None = None
        try:
            limit: asyncio.Future[Any] = asyncio.create_task(capture.limit_hit.wait())
            readers_done: asyncio.Future[Any] = asyncio.gather(*readers[:2])
            finished, _ = await asyncio.wait(
                [readers_done, limit], timeout=spec.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            limit.cancel()
            mark("run: output read to EOF")
            if not finished:
                status, error = "timed_out", f"wall clock of {spec.timeout_seconds:g}s exceeded"
            if capture.stop_reason is not None:
                status, error = "killed", capture.stop_reason
            if capture.truncated and status is None:
                status = "output_limit"
                error = f"output exceeded {spec.output_limit_bytes} bytes on one stream"
            if status is not None:
                self._kill(proc, group)
            remaining = max(spec.timeout_seconds - (time.monotonic() - started), 0) + 5
            await asyncio.wait_for(proc.wait(), timeout=remaining)
            mark("run: exit status")
        except asyncio.CancelledError:
            # The client went away: the run dies with the request.
            self._kill(proc, group)
            await proc.wait()
            raise
        except TimeoutError:
            # Streams closed but the process lingers past the clock.
            self._kill(proc, group)
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
    async def _write_stdin(proc: Jailed, data: bytes | None) -> None:
        if proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if data:
                proc.stdin.write(data)
                await proc.stdin.drain()
            proc.stdin.close()

    @staticmethod
    def _kill(proc: Jailed, group: RunCgroup) -> None:
        """SIGKILL bwrap's session, then everything in the run's cgroup (setsid daemons included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        group.kill()


async def _watch(watchdog: Callable[[], Awaitable[str | None]], capture: _Capture) -> None:
    # Asked once right at the start, then about once a second: a run that starts over its disk quota is
    # stopped at once, so repeated execs cannot each add another second's worth of writes.
    while True:
        try:
            reason = await watchdog()
        except Exception as exc:
            # Fail closed: a check that cannot run must not leave the run unchecked (an error here used to
            # end this task silently, and with it every check for the rest of the run).
            log.exception("run watchdog failed; stopping the run")
            reason = f"the run was stopped because its limits could not be checked: {exc}"
        if reason is not None:
            capture.stop_reason = reason
            capture.limit_hit.set()
            return
        await asyncio.sleep(1.0)


def _read_group(result: RunResult, group: RunCgroup, spec: RunSpec) -> None:
    """What the run's cgroup saw: an OOM kill turns the status, and the peak memory and CPU time it used."""
    if group.oom_killed() and result.status in ("failed", "succeeded"):
        result.status = "oom_killed"
        result.exit_code = None  # the limit ended it, as with every status cloche gives; a shell may still exit 0
        result.error = f"out of memory: the run exceeded its {spec.limits.memory_bytes // 2**20} MiB limit"
    result.memory_peak_bytes = group.memory_peak_bytes()
    result.cpu_seconds = group.cpu_usage_seconds()


def _close_pipes(proc: Jailed) -> None:
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


def _exit_code(code: int | None) -> int | None:
    if code is None:
        return None
    return 128 - code if code < 0 else code
