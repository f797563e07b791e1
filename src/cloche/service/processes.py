"""Background processes: an exec with ``"background": true`` becomes a resident that outlives the request.

The start is an exec up to the jail: the same target, the same dependencies for every entry point the command
starts, the same limits, secrets and egress, under the sandbox lock. Then, instead of waiting for it, the command
starts as a resident (``residents.py``) wrapped in the in-jail ports relay, with its own lifetime cap; the lock
is released at once. Each TCP port it listens on appears as a socket in its folder, which ``port_socket`` finds
for the ports proxy (``api/ports.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from cloche.errors import PortNotListening, ProcessNotFound
from cloche.jail import port_relay
from cloche.jail.egress_layer import PROXY_PORT
from cloche.models import ExecRequest
from cloche.process_models import ProcessInfo, ProcessList, ProcessLogs, ProcessOutput
from cloche.service.deps import Progress
from cloche.service.execute import ExecService
from cloche.service.masking import Masker
from cloche.service.records import DependencyRecord
from cloche.service.resident_log import LogChunk
from cloche.service.residents import Resident, Residents
from cloche.service.sandboxes import SandboxService

TOUCH_SECONDS = 10.0


class ProcessService:
    def __init__(self, execs: ExecService, residents: Residents, relay: Path) -> None:
        self.execs = execs
        self.sandboxes: SandboxService = execs.sandboxes
        self.settings = execs.settings
        self.residents = residents
        self._relay = relay  # the staged in-jail relay script
        self._touched: dict[str, float] = {}  # sandbox id -> when a proxied request last reset its idleness

    def lifetime(self, request: ExecRequest) -> float:
        asked = request.timeout_seconds or self.settings.process_lifetime_seconds
        return min(float(asked), self.settings.max_process_lifetime_seconds)

    async def start(
        self, tenant: str, sandbox_id: str, request: ExecRequest, on_install: Progress | None = None
    ) -> ProcessInfo:
        """Start it; the start is tracked like an exec, so deleting the sandbox meanwhile cancels it (and the
        deletion's resident stop comes after, so nothing started for a deleted sandbox survives)."""
        row = self.sandboxes.get_row(tenant, sandbox_id)
        work = asyncio.create_task(self._start(tenant, sandbox_id, request, on_install))
        self.sandboxes.track(row.id, work)
        return await work

    async def _start(
        self, tenant: str, sandbox_id: str, request: ExecRequest, on_install: Progress | None
    ) -> ProcessInfo:
        execs = self.execs
        async with self.sandboxes.lock(sandbox_id):
            row = self.sandboxes.get_row(tenant, sandbox_id)
            target = execs.target(row, request)
            held = execs.secrets.hold(tenant, [*row.secrets, *(request.secrets or [])])
            masker = Masker(held.values.values())
            if row.language is None and target.ecosystem is not None:
                self.sandboxes.store.set_language(row.id, target.ecosystem.name)  # the first file decides
            label = masker.mask(request.command if request.command is not None else " ".join(target.argv))
            found = await execs.prepare(row, request, target, on_install)
            record = found.prepared.record
            unrun = ProcessInfo(
                process_id=None, status="succeeded", command=label, started_at=None, lifetime_seconds=0.0
            )
            if record.error is not None:
                failed = unrun.model_copy(update={"status": "install_failed", "error": record.error})
                return _with_record(failed, record)
            if not found.argv:  # only package installs, performed: nothing is left to run
                return _with_record(unrun, record)
            refused = await self.sandboxes.quota.verdict(row)
            if refused is not None:
                return _with_record(unrun.model_copy(update={"status": "killed", "error": refused}), record)
            exec_env = execs.run_env(found.prepared.exec_env)
            spec = execs.spec(row, request, found.argv, exec_env, held)
            profile = execs.profile(row, exec_env, held)
            egress = profile.egress
            skip = (PROXY_PORT,) if egress is not None and (egress.allow or egress.report_refusals) else ()
            profile = dataclasses.replace(profile, mounts=(*profile.mounts, port_relay.mount(self._relay)))
            spec = dataclasses.replace(
                spec,
                argv=port_relay.wrap(spec.argv, skip),
                timeout_seconds=self.lifetime(request),
                output_limit_bytes=None,  # a server logs for hours: the log keeps its newest part
                stdin=None,
                watchdog=self.sandboxes.quota.watchdog(row),
            )
            resident = await self.residents.start(row.id, "process", spec, profile, label, masker, self._ended)
            self.sandboxes.touch(row.id)
            await self.sandboxes.audit.process_started(row.id, resident.id, label, record.env_key)
        return _with_record(self._info(resident), record)

    async def _ended(self, resident: Resident) -> None:
        result = resident.result
        exit_code = result.exit_code if result is not None else None
        await self.sandboxes.audit.process_ended(resident.sandbox_id, resident.id, resident.status, exit_code)

    def _info(self, resident: Resident) -> ProcessInfo:
        result = resident.result
        return ProcessInfo(
            process_id=resident.id,
            status="running" if result is None else result.status,
            command=resident.label,
            started_at=resident.started_at,
            finished_at=resident.finished_at,
            exit_code=None if result is None else result.exit_code,
            error=None if result is None else result.error,
            lifetime_seconds=resident.lifetime_seconds,
            ports=port_relay.ports_in(resident.socket_dir) if result is None else [],
        )

    def _find(self, tenant: str, sandbox_id: str, process_id: str) -> Resident:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        resident = self.residents.get(process_id)
        if resident is None or resident.sandbox_id != row.id or resident.kind != "process":
            raise ProcessNotFound(f"no background process {process_id!r} in sandbox {sandbox_id}")
        return resident

    def listing(self, tenant: str, sandbox_id: str) -> ProcessList:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        return ProcessList(processes=[self._info(r) for r in self.residents.listing(row.id, "process")])

    def get(self, tenant: str, sandbox_id: str, process_id: str) -> ProcessInfo:
        return self._info(self._find(tenant, sandbox_id, process_id))

    def logs(self, tenant: str, sandbox_id: str, process_id: str, since: int = 0) -> ProcessLogs:
        resident = self._find(tenant, sandbox_id, process_id)
        read = resident.log.read(since)
        return ProcessLogs(
            status=self._info(resident).status,
            output="".join(c.text for c in read.chunks),
            chunks=[_output(c) for c in read.chunks],
            start=read.start,
            end=read.end,
            dropped=read.dropped,
        )

    def follow(
        self, tenant: str, sandbox_id: str, process_id: str, since: int = 0
    ) -> tuple[AsyncIterator[LogChunk], Callable[[], ProcessInfo]]:
        """Its output from ``since``, then as it comes, until it ends (looked up before the first chunk), and
        how to read its state at the end (even once it was stopped and forgotten)."""
        resident = self._find(tenant, sandbox_id, process_id)
        return resident.log.follow(since), lambda: self._info(resident)

    async def stop(self, tenant: str, sandbox_id: str, process_id: str) -> ProcessInfo:
        resident = self._find(tenant, sandbox_id, process_id)
        await self.residents.stop(resident.id)
        return self._info(resident)

    def port_socket(self, tenant: str, sandbox_id: str, port: int) -> Path:
        """The socket reaching ``port`` of the newest running process that listens on it."""
        row = self.sandboxes.get_row(tenant, sandbox_id)
        for resident in reversed(self.residents.listing(row.id, "process")):
            if resident.running and port in port_relay.ports_in(resident.socket_dir):
                self._keep_alive(row.id)
                return resident.socket(port_relay.socket_name(port))
        raise PortNotListening(
            f"no background process of sandbox {sandbox_id} listens on port {port}; start a server with "
            '{"command": ..., "background": true} that listens on 0.0.0.0 or 127.0.0.1'
        )

    def _keep_alive(self, sandbox_id: str) -> None:
        """A served sandbox is in use: its idle clock restarts (written at most every TOUCH_SECONDS)."""
        now = time.monotonic()
        if now - self._touched.get(sandbox_id, -TOUCH_SECONDS) >= TOUCH_SECONDS:
            self._touched[sandbox_id] = now
            self.sandboxes.touch(sandbox_id)


def _output(chunk: LogChunk) -> ProcessOutput:
    return ProcessOutput(offset=chunk.offset, stream=chunk.stream, text=chunk.text)


def _with_record(info: ProcessInfo, record: DependencyRecord) -> ProcessInfo:
    return info.model_copy(
        update={
            "install": record.install,
            "unlisted_imports": record.unlisted_imports,
            "unresolved_imports": record.unresolved_imports,
        }
    )
