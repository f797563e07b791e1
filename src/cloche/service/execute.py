"""The exec use case: resolve what to run, run it in the jail under the sandbox lock, record the run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cloche.ecosystems import registry
from cloche.errors import FileNotFound, RunNotFound
from cloche.jail.profile import SANDBOX_DIR, JailProfile, RunSpec
from cloche.jail.runner import Runner, RunResult, StreamName
from cloche.models import ExecRequest, ExecResult, RunList, RunRecord, RunSummary
from cloche.service.ids import new_run_id, utcnow
from cloche.service.sandboxes import SandboxService
from cloche.store import safefs
from cloche.store.metadata import RunRow, SandboxRow

log = logging.getLogger("cloche.exec")

EventSink = Callable[[StreamName, str], Awaitable[None]]


class ExecService:
    def __init__(self, sandboxes: SandboxService, runner: Runner) -> None:
        self.sandboxes = sandboxes
        self.settings = sandboxes.settings
        self.runner = runner

    def _argv(self, row: SandboxRow, request: ExecRequest) -> list[str]:
        if request.command is not None:
            return ["/bin/sh", "-c", request.command]
        assert request.filename is not None
        entry = str(safefs.validate_relpath(request.filename))
        ecosystem = registry.for_entry(entry)
        root = self.sandboxes.paths.workspace(row.id)
        info = safefs.lookup(root, entry)
        if info is None or info.type != "file":
            raise FileNotFound(f"{entry!r} is not a file in the workspace; upload it first")
        if row.language is None:
            self.sandboxes.store.set_language(row.id, ecosystem.name)
        return ecosystem.command(entry, request.args)

    def _spec(self, row: SandboxRow, request: ExecRequest, argv: list[str]) -> RunSpec:
        settings = self.settings
        timeout = (
            request.timeout_seconds or row.limits.get("timeout_seconds") or settings.default_timeout_seconds
        )
        output = row.limits.get("output_bytes") or settings.output_limit_bytes
        return RunSpec(
            argv=tuple(argv),
            env={**row.env, **(request.env or {})},
            cwd=SANDBOX_DIR,
            stdin=request.stdin.encode() if request.stdin is not None else None,
            timeout_seconds=min(float(timeout), settings.max_timeout_seconds),
            output_limit_bytes=min(int(output), settings.output_limit_bytes),
        )

    async def execute(
        self, tenant: str, sandbox_id: str, request: ExecRequest, on_output: EventSink | None = None
    ) -> ExecResult:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        task = asyncio.current_task()
        assert task is not None
        self.sandboxes.track(row.id, task)
        async with self.sandboxes.lock(row.id):
            row = self.sandboxes.get_row(tenant, sandbox_id)  # it may have been deleted while we waited
            argv = self._argv(row, request)
            spec = self._spec(row, request, argv)
            profile = JailProfile(
                name="exec",
                host_uid=row.host_uid,
                workspace=self.sandboxes.paths.workspace(row.id),
                workspace_writable=True,
            )
            run = RunRow(id=new_run_id(), sandbox_id=row.id, argv=argv, status="running", started_at=utcnow())
            self.sandboxes.store.insert_run(run)
            self.sandboxes.touch(row.id)
            try:
                result = await self.runner.run(spec, profile, on_output)
            except asyncio.CancelledError:
                self._finish(run, None, "killed", "the client disconnected or the sandbox was deleted")
                raise
            except Exception as exc:
                self._finish(run, None, "failed", f"cloche could not run this: {exc}")
                raise
            self._finish(run, result, result.status, result.error)
            self.sandboxes.touch(row.id)
        log.info("run finished", extra={"sandbox_id": row.id, "run_id": run.id, "status": run.status})
        return _result(run)

    def _finish(self, run: RunRow, result: RunResult | None, status: str, error: str | None) -> None:
        run.status = status
        run.error = error
        run.finished_at = utcnow()
        if result is not None:
            run.exit_code = result.exit_code
            run.stdout, run.stderr, run.output = result.stdout, result.stderr, result.output
            run.truncated = result.truncated
            run.duration_ms = result.duration_ms
        else:
            run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
        self.sandboxes.store.finish_run(run)

    def runs(self, tenant: str, sandbox_id: str, limit: int = 100) -> RunList:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        rows = self.sandboxes.store.list_runs(row.id, limit)
        return RunList(
            runs=[
                RunSummary(
                    run_id=r.id,
                    status=r.status,
                    exit_code=r.exit_code,
                    argv=r.argv,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                    duration_ms=r.duration_ms,
                )
                for r in rows
            ]
        )

    def run(self, tenant: str, sandbox_id: str, run_id: str) -> RunRecord:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        run = self.sandboxes.store.get_run(row.id, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} in sandbox {sandbox_id}")
        return RunRecord(
            **_result(run).model_dump(),
            sandbox_id=run.sandbox_id,
            argv=run.argv,
            started_at=run.started_at,
            finished_at=run.finished_at,
            error=run.error,
        )


def _result(run: RunRow) -> ExecResult:
    return ExecResult(
        run_id=run.id,
        status=run.status,
        exit_code=run.exit_code,
        output=run.output,
        stdout=run.stdout,
        stderr=run.stderr,
        duration_ms=run.duration_ms,
        truncated=run.truncated,
    )
