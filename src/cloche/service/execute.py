"""The exec use case: resolve what to run, run it in the jail under the sandbox lock, record the run."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from cloche.ecosystems.base import Ecosystem, ExecEnv
from cloche.ecosystems.registry import EcosystemRegistry
from cloche.errors import FileNotFound, RunNotFound
from cloche.jail import display
from cloche.jail.profile import SANDBOX_DIR, JailProfile, RunSpec
from cloche.jail.runner import Runner, RunResult
from cloche.logs import bind as bind_log_fields
from cloche.metrics import Metrics
from cloche.models import ExecRequest, ExecResult, RunList, RunRecord, RunSummary
from cloche.service import run_policy
from cloche.service.command_deps import CommandDependencies, CommandDeps
from cloche.service.deps import DependencyService, Progress
from cloche.service.exec_call import ExecCall
from cloche.service.ids import new_run_id, utcnow
from cloche.service.masking import Masker
from cloche.service.records import DependencyRecord
from cloche.service.run_capture import RunCapture
from cloche.service.run_env import combine
from cloche.service.sandboxes import SandboxService
from cloche.service.secrets import Held, SecretService
from cloche.service.warm import WarmInterpreters, WarmRun
from cloche.steps import mark
from cloche.store import safefs
from cloche.store.metadata import RunRow, SandboxRow

log = logging.getLogger("cloche.exec")


@dataclass(frozen=True)
class Target:
    """What an exec request runs: the ecosystem (None for a command in a sandbox of no language yet), the
    entry file (None for a command) and the argv inside the jail."""

    ecosystem: Ecosystem | None
    entry: str | None
    argv: list[str]


class ExecService:
    def __init__(
        self,
        sandboxes: SandboxService,
        runner: Runner,
        ecosystems: EcosystemRegistry,
        deps: DependencyService,
        secrets: SecretService,
        metrics: Metrics | None = None,
        warm: WarmInterpreters | None = None,
    ) -> None:
        self.sandboxes = sandboxes
        self.settings = sandboxes.settings
        self.runner = runner
        self.ecosystems = ecosystems
        self.deps = deps
        self.secrets = secrets
        self.metrics = metrics or deps.metrics
        self.commands = CommandDependencies(ecosystems, deps)
        self.warm = warm

    def target(self, row: SandboxRow, request: ExecRequest) -> Target:
        """What the request runs; commands run with /bin/sh in the workspace. Reads only."""
        if request.command is not None:
            language = self.ecosystems.by_name(row.language) if row.language else None
            return Target(language, None, ["/bin/sh", "-c", request.command])
        assert request.filename is not None
        entry = str(safefs.validate_relpath(request.filename))
        ecosystem = self.ecosystems.for_entry(entry)
        root = self.sandboxes.paths.workspace(row.id)
        info = safefs.lookup(root, entry)
        if info is None or info.type != "file":
            raise FileNotFound(f"{entry!r} is not a file in the workspace; upload it first")
        return Target(ecosystem, entry, ecosystem.command(entry, request.args))

    async def prepare(
        self, row: SandboxRow, request: ExecRequest, target: Target, progress: Progress | None
    ) -> CommandDeps:
        """The dependencies, what to run (argv; empty: nothing, the command was only installs) and what the
        command's typed installs printed."""
        root = self.sandboxes.paths.workspace(row.id)
        if request.command is not None:  # every entry point the command starts, and the installs it types
            return await self.commands.prepare(row.id, row.language, root, request.command, progress)
        assert target.ecosystem is not None and target.entry is not None
        prepared = await self.deps.prepare(row.id, target.ecosystem, root, [target.entry], progress)
        return CommandDeps(prepared, target.argv)

    def run_env(self, prepared: ExecEnv) -> ExecEnv:
        """What a jailed run of a sandbox sees: its prepared environments, then every ecosystem's command tools
        (python, pip, node, ...) whatever its language."""
        return combine([prepared, *(e.command_tools for e in self.ecosystems.ecosystems)])

    def spec(self, row: SandboxRow, request: ExecRequest, argv: list[str], exec_env: ExecEnv, held: Held) -> RunSpec:
        settings = self.settings
        asked = {**row.limits, **(request.limits.model_dump(exclude_none=True) if request.limits else {})}
        if request.timeout_seconds:
            asked["timeout_seconds"] = request.timeout_seconds
        timeout = asked.get("timeout_seconds") or settings.default_timeout_seconds
        output = asked.get("output_bytes") or settings.output_limit_bytes
        return RunSpec(
            argv=display.wrap(tuple(argv)) if exec_env.display else tuple(argv),
            env={**exec_env.env, **row.env, **(request.env or {}), **held.values},  # over the runner's base ones
            cwd=SANDBOX_DIR,
            stdin=request.stdin.encode() if request.stdin is not None else None,
            timeout_seconds=min(float(timeout), settings.max_timeout_seconds),
            output_limit_bytes=min(int(output), settings.output_limit_bytes),
            limits=run_policy.limits(settings, asked),
            watchdog=self.sandboxes.quota.watchdog(row),
        )

    def profile(self, row: SandboxRow, exec_env: ExecEnv, held: Held) -> JailProfile:
        """The *exec* profile: the workspace read-write, the environments' mounts, the sandbox's egress."""
        return JailProfile(
            name="exec",
            host_uid=row.host_uid,
            workspace=self.sandboxes.paths.workspace(row.id),
            workspace_writable=True,
            mounts=exec_env.mounts,
            egress=run_policy.egress(self.sandboxes, row, held),
            tmp_size_bytes=self.settings.tmp_mb * 1024 * 1024,
            isolation=row.isolation,
        )

    async def execute(self, call: ExecCall) -> ExecResult:
        """Run the request, tracked by its sandbox (``SandboxService.run_tracked``); a run the sandbox's deletion
        killed is answered as ``killed``, with its output."""
        runs: list[RunRow] = []

        def killed() -> ExecResult | None:  # an answer, not an error, once the run had begun
            return _result(runs[0], DependencyRecord.from_json(runs[0].extra)) if runs else None

        return await self.sandboxes.run_tracked(call.tenant, call.sandbox_id, lambda: self._execute(call, runs), killed)

    async def _execute(self, call: ExecCall, runs: list[RunRow]) -> ExecResult:
        mark("exec: task started")
        tenant, sandbox_id, request = call.tenant, call.sandbox_id, call.request
        async with self.sandboxes.lock(sandbox_id):
            row = self.sandboxes.get_row(tenant, sandbox_id)  # it may have been deleted while we waited
            mark("exec: sandbox lock and row")
            target = self.target(row, request)
            mark("exec: target (entry lookup)")
            held = self.secrets.hold(tenant, [*row.secrets, *(request.secrets or [])])
            masker = Masker(held.values.values())
            if row.language is None and target.ecosystem is not None:
                self.sandboxes.store.set_language(row.id, target.ecosystem.name)  # the first file decides
            language = row.language or (target.ecosystem.name if target.ecosystem else None)
            argv = [masker.mask(a) for a in target.argv]  # as stored and audited
            run = RunRow(id=new_run_id(), sandbox_id=row.id, argv=argv, status="running", started_at=utcnow())
            self.sandboxes.store.insert_run(run)
            mark("exec: secrets held, run row inserted")
            runs.append(run)
            capture = RunCapture(self.sandboxes.store, run.id, call.on_output, masker)
            bind_log_fields(sandbox_id=row.id, run_id=run.id)  # install, egress and exec lines of this run
            self.sandboxes.touch(row.id)
            mark("exec: sandbox touched")
            audit = self.sandboxes.audit
            workspace = self.sandboxes.paths.workspace(row.id)
            await audit.exec_requested(run, target.entry)
            mark("exec: exec_requested queued")
            record = DependencyRecord()
            try:
                found = await self.prepare(row, request, target, call.on_progress)
                mark("exec: dependencies (detection, fingerprint)")
                prepared, installs = found.prepared, found.install_output
                record = prepared.record
                run.extra = record.to_json()  # the one serialisation of the dependency record
                if record.install is not None and record.install.installed:
                    await audit.install_performed(run, record)
                if record.error is not None:
                    error = record.error
                    return await self._end_unrun(run, language, record, "install_failed", error, "Install failed:\n")
                if not found.argv:  # only package installs, which the server has performed: nothing to run
                    done = RunResult("succeeded", 0, installs, "", _install_lines(record) + installs, False, 0)
                    self._finish(run, language, done, done.status, None, masker)
                    await audit.run_finished(run, record, workspace)
                    return _result(run, record)
                # A walked workspace over its quota runs nothing until files are deleted.
                refused = await self.sandboxes.quota.verdict(row)
                mark("exec: quota check")
                if refused is not None:
                    return await self._end_unrun(run, language, record, "killed", refused)
                exec_env = self.run_env(prepared.exec_env)
                spec = self.spec(row, request, found.argv, exec_env, held)
                profile = self.profile(row, exec_env, held)
                mark("exec: run spec and profile")
                async with capture.saving():
                    result = await self._run(row.id, found, exec_env, spec, profile, bool(held.values), capture)
                    await capture.flush()
                mark("exec: output saved")
                result.output = _install_lines(record) + installs + result.output
                # The watchdog's last check may have been cut short by the run's end: measure once more.
                late = await self.sandboxes.quota.verdict(row)
                mark("exec: quota check after the run")
                if late is not None and result.status in ("succeeded", "failed"):
                    result.status, result.exit_code, result.error = "killed", None, late
            except asyncio.CancelledError as exc:
                capture.keep_in(run)
                self._finish(run, language, None, "killed", str(exc) or "the client disconnected", masker)
                audit.run_aborted(run, record)
                raise
            except Exception as exc:
                self.metrics.jail_failed()
                self._finish(run, language, None, "failed", f"cloche could not run this: {exc}", masker)
                raise
            self._finish(run, language, result, result.status, result.error, masker)
            mark("exec: run row finished")
            self.sandboxes.touch(row.id)
            mark("exec: sandbox touched")
            await audit.run_finished(run, record, workspace)
        log.info("run finished", extra={"sandbox_id": row.id, "run_id": run.id, "status": run.status})
        return _result(run, record)

    async def _run(
        self,
        sandbox_id: str,
        found: CommandDeps,
        exec_env: ExecEnv,
        spec: RunSpec,
        profile: JailProfile,
        secret: bool,
        capture: RunCapture,
    ) -> RunResult:
        """Forked by the sandbox's warm interpreter when it can serve the run, else a cold run (after which the
        warm interpreter is started for the next one); the run record says which, and why."""
        preload = found.prepared.preload
        if self.warm is None or preload is None or not self.warm.serves(spec):
            return await self.runner.run(spec, profile, capture.sink)
        fork = WarmRun(sandbox_id, preload, found.prepared.exec_env.env, spec, profile, secret)
        result, note = await self.warm.run(fork, capture.sink)
        if result is None:
            mark("warm: declined, the run starts cold")
            result = await self.runner.run(spec, profile, capture.sink)
            await self.warm.start(fork)
            mark("warm: zygote start requested")
        result.warm = note
        return result

    async def _end_unrun(
        self, run: RunRow, language: str | None, record: DependencyRecord, status: str, error: str, heading: str = ""
    ) -> ExecResult:
        """Record a run that was never started (its install failed, or its workspace is over quota)."""
        run.output = f"{heading}{error}\n"
        self._finish(run, language, None, status, error, Masker(()))
        await self.sandboxes.audit.run_finished(run, record, self.sandboxes.paths.workspace(run.sandbox_id))
        return _result(run, record)

    def _finish(
        self,
        run: RunRow,
        language: str | None,
        result: RunResult | None,
        status: str,
        error: str | None,
        masker: Masker,
    ) -> None:
        """Record the run's end; every text it keeps passes the run's secret masker first."""
        run.status = status
        run.error = masker.mask_opt(error)
        run.finished_at = utcnow()
        if result is not None:
            run.exit_code = result.exit_code
            run.stdout, run.stderr, run.output = result.stdout, result.stderr, result.output
        run.stdout, run.stderr, run.output = (masker.mask(t) for t in (run.stdout, run.stderr, run.output))
        if result is not None:
            run.truncated = result.truncated
            run.duration_ms = result.duration_ms
            run.extra["egress_denied"] = result.egress_denied
            if result.warm is not None:
                run.extra["warm"] = result.warm
        else:
            run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
        self.sandboxes.store.finish_run(run)
        denied = len(result.egress_denied) if result is not None else 0
        self.metrics.exec_finished(language, status, run.duration_ms / 1000, denied)

    def runs(self, tenant: str, sandbox_id: str, limit: int = 100) -> RunList:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        rows = self.sandboxes.store.list_runs(row.id, limit)
        return RunList(runs=[RunSummary(**_summary(r)) for r in rows])

    def run(self, tenant: str, sandbox_id: str, run_id: str) -> RunRecord:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        run = self.sandboxes.store.get_run(row.id, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} in sandbox {sandbox_id}")
        result = _result(run, DependencyRecord.from_json(run.extra)).model_dump()
        return RunRecord(**{**result, **_summary(run)}, sandbox_id=run.sandbox_id)


def _install_lines(record: DependencyRecord) -> str:
    install = record.install
    lines = [f"Installing {c.name}=={c.version}...\n" for c in (install.installed if install else [])]
    for step in install.recovery if install else []:
        lines.append(f"Recovery for '{step.module}' ({step.action}): {step.requirement} {step.outcome}\n")
    for failure in install.import_failures if install else []:
        lines.append(f"Note: '{failure.module}' does not import in the environment: {failure.error}\n")
    for item in record.unlisted_imports:
        hint = f" (add {item.suggested})" if item.suggested else ""
        lines.append(f"Note: '{item.module}' is imported but not listed in the manifest{hint}\n")
    return "".join(lines)


def _summary(run: RunRow) -> dict[str, Any]:
    """The fields a run listing shows (a full record shows them too)."""
    fields = ("status", "exit_code", "argv", "started_at", "finished_at", "duration_ms")
    return {"run_id": run.id, **{name: getattr(run, name) for name in fields}}


def _result(run: RunRow, record: DependencyRecord) -> ExecResult:
    outcome = ("status", "exit_code", "output", "stdout", "stderr", "duration_ms", "truncated", "error")
    return ExecResult(
        install=record.install,
        unlisted_imports=record.unlisted_imports,
        unresolved_imports=record.unresolved_imports,
        egress_denied=run.extra.get("egress_denied") or [],
        warm=run.extra.get("warm"),
        run_id=run.id,
        **{name: getattr(run, name) for name in outcome},
    )
