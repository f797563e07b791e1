"""Residents: jailed processes that outlive one request (background processes, code kernels, warm interpreters).

A resident is one ``Runner.run`` (the same checklist, its own cgroup and limits) in an asyncio task of its own;
``spec.timeout_seconds`` is its lifetime cap. Its output goes to a bounded ``LogBuffer``. It gets a host folder of
its own, owned by the sandbox's uid and bound read-write at ``RESIDENT_DIR`` (``/run/resident``) in its jail,
where it creates the unix sockets the server reaches it through; the server never reaches it any other way.

Nothing of a resident outlives its end: when the run ends (exit, lifetime cap, ``stop``) its processes and cgroup
are gone with the run, and its socket folder is removed. ``stop_sandbox`` runs when a sandbox is deleted or idles
out, ``stop_all`` at shutdown. A finished resident stays listed (status, exit code, log) until it is stopped, with
at most ``KEEP_FINISHED`` per sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cloche.errors import InvalidRequest, ResidentLimit
from cloche.jail.profile import JailProfile, RunSpec
from cloche.jail.runner import Runner, RunResult, StreamName
from cloche.service.ids import new_resident_id, utcnow
from cloche.service.masking import Masker, StreamMasker
from cloche.service.resident_log import LogBuffer
from cloche.store import safefs

if TYPE_CHECKING:
    from cloche.jail.egress_layer import EgressSession

log = logging.getLogger("cloche.residents")

ResidentKind = Literal["process", "context", "zygote"]
KEEP_FINISHED = 16  # finished residents listed per sandbox (their logs readable) before the oldest are forgotten


class ResidentEnded(Exception):
    """The resident ended before what was awaited happened (its socket never appeared)."""


@dataclass(eq=False)
class Resident:
    id: str
    sandbox_id: str
    kind: ResidentKind
    host_uid: int
    socket_dir: Path  # on the host; RESIDENT_DIR inside the jail
    log: LogBuffer
    label: str  # what it runs, as listings show it (e.g. the command)
    lifetime_seconds: float  # its cap (the spec's timeout)
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    result: RunResult | None = None  # set when the run has ended
    task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.result is None

    @property
    def status(self) -> str:
        return "running" if self.result is None else self.result.status

    def socket(self, name: str) -> Path:
        """The host path of socket ``name`` that the resident creates at ``RESIDENT_DIR/name``."""
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise InvalidRequest(f"invalid socket name {name!r}")
        return self.socket_dir / name

    async def wait(self) -> RunResult:
        """Until the run ends; its result."""
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self.task)
        assert self.result is not None
        return self.result

    async def wait_for_socket(self, name: str, timeout: float) -> Path:
        """Until the resident has made socket ``name`` (never connected to: a probe would be a client to the
        program); ``ResidentEnded`` if it ends first, ``TimeoutError`` past ``timeout``."""
        path = self.socket(name)
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise ResidentEnded(f"the process ended ({self.status}) before it listened on {name}")
            if _is_socket(path):
                return path
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing listened on {name} within {timeout:g}s")
            await asyncio.sleep(0.02)


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


class Residents:
    """The server's registry of residents; every one of them belongs to one sandbox."""

    def __init__(self, runner: Runner, run_dir: Path, *, log_bytes: int, most_per_sandbox: int) -> None:
        self._runner = runner
        self._run_dir = run_dir
        self._log_bytes = log_bytes
        self._most = most_per_sandbox
        self._all: dict[str, Resident] = {}

    async def start(
        self,
        sandbox_id: str,
        kind: ResidentKind,
        spec: RunSpec,
        profile: JailProfile,
        label: str = "",
        masker: Masker | None = None,
        on_end: Callable[[Resident], Awaitable[None]] | None = None,
        on_started: Callable[[EgressSession | None], None] | None = None,
    ) -> Resident:
        """Start ``spec`` in ``profile`` (plus the resident's socket folder) and return at once; the run goes on
        in its own task. ``masker`` hides the run's secrets in its log; ``on_end`` runs in that task once the run
        ended and its folder is gone (so ``stop`` and ``stop_all`` wait for it); ``on_started`` is ``Runner.run``'s:
        told the resident's egress session once it runs. Refused with ``ResidentLimit`` when the sandbox already
        runs its most residents."""
        live = [r for r in self.listing(sandbox_id) if r.running]
        if len(live) >= self._most:
            raise ResidentLimit(
                f"sandbox {sandbox_id} already runs {len(live)} long-lived processes (background processes and "
                "code contexts; CLOCHE_MAX_RESIDENTS_PER_SANDBOX): stop one first"
            )
        resident_id = new_resident_id()
        directory = self._run_dir / resident_id
        directory.mkdir(mode=0o700)
        os.chown(directory, profile.host_uid, profile.host_uid)
        resident = Resident(
            resident_id,
            sandbox_id,
            kind,
            profile.host_uid,
            directory,
            LogBuffer(self._log_bytes),
            label,
            spec.timeout_seconds,
        )
        self._all[resident_id] = resident
        jailed = dataclasses.replace(profile, socket_dir=directory)
        work = self._run(resident, spec, jailed, masker or Masker(()), on_end, on_started)
        resident.task = asyncio.create_task(work, name=f"resident {resident_id}")
        self._forget_finished(sandbox_id)
        log.info("resident started", extra={"sandbox_id": sandbox_id, "resident_id": resident_id, "kind": kind})
        return resident

    async def _run(
        self,
        resident: Resident,
        spec: RunSpec,
        profile: JailProfile,
        masker: Masker,
        on_end: Callable[[Resident], Awaitable[None]] | None,
        on_started: Callable[[EgressSession | None], None] | None,
    ) -> None:
        started = time.monotonic()
        streams: dict[StreamName, StreamMasker] = {"stdout": masker.stream(), "stderr": masker.stream()}

        async def sink(name: StreamName, text: str) -> None:
            resident.log.append(name, streams[name].feed(text))

        try:
            resident.result = await self._runner.run(spec, profile, sink, on_started)
        except asyncio.CancelledError:
            resident.result = _ended("killed", started, "stopped")
            raise
        except Exception as exc:
            log.exception("resident failed to run", extra={"resident_id": resident.id})
            resident.result = _ended("failed", started, f"cloche could not run this: {exc}")
        finally:
            resident.finished_at = utcnow()
            for name, stream in streams.items():
                resident.log.append(name, stream.flush())
            resident.log.close()
            safefs.remove_tree(resident.socket_dir)
            log.info("resident ended", extra={"resident_id": resident.id, "status": resident.status})
            if on_end is not None:
                try:
                    await on_end(resident)
                except Exception:  # a record that could not be written must not hide the end itself
                    log.exception("recording a resident's end failed", extra={"resident_id": resident.id})

    def get(self, resident_id: str) -> Resident | None:
        return self._all.get(resident_id)

    def listing(self, sandbox_id: str, kind: ResidentKind | None = None) -> list[Resident]:
        """The sandbox's residents (of ``kind``), oldest first."""
        return [r for r in self._all.values() if r.sandbox_id == sandbox_id and kind in (None, r.kind)]

    async def stop(self, resident_id: str) -> Resident | None:
        """End it (if it still runs) and forget it; returns it with its result, None when unknown."""
        resident = self._all.pop(resident_id, None)
        if resident is None:
            return None
        task = resident.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        safefs.remove_tree(resident.socket_dir)  # already gone unless the task never ran
        return resident

    async def stop_sandbox(self, sandbox_id: str) -> int:
        """Stop every resident of the sandbox (it is deleted, paused or idled out); how many there were."""
        found = self.listing(sandbox_id)
        await asyncio.gather(*(self.stop(r.id) for r in found))
        return len(found)

    async def stop_all(self) -> None:
        """At shutdown."""
        await asyncio.gather(*(self.stop(r) for r in list(self._all)))

    def _forget_finished(self, sandbox_id: str) -> None:
        finished = [r for r in self.listing(sandbox_id) if not r.running]
        for resident in finished[: max(len(finished) - KEEP_FINISHED, 0)]:
            self._all.pop(resident.id, None)


def _ended(status: Literal["killed", "failed"], started: float, error: str) -> RunResult:
    elapsed = int((time.monotonic() - started) * 1000)
    return RunResult(status, None, "", "", "", False, elapsed, error=error)
