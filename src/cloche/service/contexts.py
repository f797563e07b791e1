"""Code contexts: a persistent Python kernel per context, inside its sandbox's jail, and the cells run in it.

One cell, end to end (under the sandbox's lock, like an exec):

1. Its imports join the context's dependency source, ``.cloche/contexts/<id>.py`` in the workspace (import lines
   only, accumulated), which goes through the same dependency step as a file exec: the sandbox's needs union,
   the store, a build when something new is needed.
2. The kernel: started if the context has none running (first cell, after a crash, after ``restart``); if the
   sandbox's environment grew while it ran, the new environment is linked in and put first on the kernel's path,
   so its state is kept; if a package it could already import changed version, it is restarted instead, and the
   result says so (``restarted``, ``restart_reason``).
3. The cell runs; past its wall clock it is interrupted (state kept); a kernel that dies is reported (``crashed``)
   and the next cell starts a new one.

Contexts live in this server process only: a server restart ends them (their state cannot outlive the kernel).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cloche.ecosystems.base import ExecEnv
from cloche.ecosystems.python import kernel
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.errors import ContextNotFound, InvalidRequest, TooManyContexts
from cloche.jail.install import InstallJailFactory
from cloche.jail.profile import SANDBOX_DIR, RunSpec
from cloche.models_code import CodeError, CodeRequest, CodeResult, Context, CreateContext
from cloche.service import run_policy
from cloche.service.cell_results import cell_result, masked
from cloche.service.context_record import SOURCE_DIR, CodeContext, context_view
from cloche.service.deps import Prepared, Progress
from cloche.service.execute import ExecService
from cloche.service.ids import utcnow
from cloche.service.kernel_client import CellOutcome, CellSink
from cloche.service.kernel_tools import KernelTools
from cloche.service.kernels import Kernel, KernelLaunch
from cloche.service.masking import Masker
from cloche.service.residents import Residents
from cloche.store import safefs
from cloche.store.envstore import EnvironmentStore
from cloche.store.metadata import SandboxRow

log = logging.getLogger("cloche.contexts")
SOURCE_HEADER = "# The imports of this code context's cells: cloche installs what they need. Do not edit.\n"


@dataclass(frozen=True)
class CodeCall:
    """One cell as it goes from its route to ``ContextService.run``, like an exec's ``ExecCall``."""

    tenant: str
    sandbox_id: str
    request: CodeRequest
    on_output: CellSink | None = None  # ("stdout" | "stderr", text) or ("result", CodeOutput) as they come
    on_progress: Progress | None = None  # each install event while the cell's imports are prepared


class ContextService:
    def __init__(
        self,
        execs: ExecService,
        residents: Residents,
        python: PythonEcosystem,
        jails: InstallJailFactory,
        envs: EnvironmentStore,
    ) -> None:
        """A cell runs in an exec's jail with an exec's environment: ``execs`` has the sandboxes, dependencies and
        secrets it uses."""
        self.execs = execs
        self.sandboxes, self.settings, self.deps = execs.sandboxes, execs.settings, execs.deps
        self.residents = residents
        self.python = python
        self.envs = envs
        self.tools = KernelTools(python, jails, envs)
        self.launcher = kernel.launcher(self.sandboxes.paths.jail / "tools")
        self._contexts: dict[str, CodeContext] = {}
        self.sandboxes.on_destroy(self.stop_sandbox)

    def held_keys(self) -> set[str]:
        """Store entries kernels use beyond the sandboxes' bound environments: never collected while held."""
        held = {self.tools.key} if self.tools.key else set()
        for ctx in self._contexts.values():
            if ctx.kernel is not None:
                held |= ctx.kernel.env_keys
        return held

    # the API's view

    def view(self, ctx: CodeContext) -> Context:
        return context_view(ctx, self.settings.context_idle_seconds)

    def listing(self, tenant: str, sandbox_id: str) -> list[Context]:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        return [self.view(c) for c in self._of(row.id)]

    def get(self, tenant: str, sandbox_id: str, context_id: str) -> Context:
        return self.view(self._find(self.sandboxes.get_row(tenant, sandbox_id), context_id))

    def _of(self, sandbox_id: str) -> list[CodeContext]:
        return [c for c in self._contexts.values() if c.sandbox_id == sandbox_id]

    def _find(self, row: SandboxRow, context_id: str) -> CodeContext:
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.sandbox_id != row.id:
            raise ContextNotFound(
                f"no code context {context_id!r} in sandbox {row.id} (contexts idle longer than "
                f"{self.settings.context_idle_seconds:g}s are stopped); list them with GET .../contexts"
            )
        return ctx

    def _new(self, row: SandboxRow, default: bool) -> CodeContext:
        if len(self._of(row.id)) >= self.settings.max_contexts_per_sandbox:
            raise TooManyContexts(
                f"sandbox {row.id} already holds {self.settings.max_contexts_per_sandbox} code contexts "
                "(CLOCHE_MAX_CONTEXTS_PER_SANDBOX); delete one first"
            )
        now = utcnow()
        ctx = CodeContext("ctx_" + secrets.token_hex(12), row.id, default, now, now)
        self._contexts[ctx.id] = ctx
        return ctx

    # lifecycle

    async def create(self, tenant: str, sandbox_id: str, body: CreateContext) -> Context:
        """A new context; its kernel starts in the background (``starting``), over the sandbox's environment as it
        is now, and its first cell waits for it."""
        row = self.sandboxes.get_row(tenant, sandbox_id)
        ctx = self._new(row, default=False)
        self._launch(row, ctx)
        return self.view(ctx)

    async def restart(self, tenant: str, sandbox_id: str, context_id: str) -> Context:
        """A fresh kernel for the context (its variables are gone), starting in the background."""
        row = self.sandboxes.get_row(tenant, sandbox_id)
        ctx = self._find(row, context_id)
        await self._stop_kernel(ctx, None)
        self._launch(row, ctx)
        return self.view(ctx)

    def _launch(self, row: SandboxRow, ctx: CodeContext) -> None:
        async def start() -> None:
            try:
                await self._start(row, ctx, self.deps.current(row.id, self.python))
            except Exception as exc:  # told by the next cell, which tries again
                ctx.ended = f"the kernel could not start: {exc}"
                log.warning("kernel did not start", extra={"context_id": ctx.id, "error": str(exc)})

        ctx.starting = True
        ctx.launching = asyncio.create_task(start())

    async def _settle(self, ctx: CodeContext) -> None:
        """Wait for a kernel starting in the background (its failure is in ``ctx.ended``)."""
        if ctx.launching is not None:
            await asyncio.shield(ctx.launching)

    async def delete(self, tenant: str, sandbox_id: str, context_id: str) -> None:
        """Stops the kernel at once (a cell still running in it ends as ``crashed``)."""
        ctx = self._find(self.sandboxes.get_row(tenant, sandbox_id), context_id)
        self._contexts.pop(ctx.id, None)
        await self._stop_kernel(ctx, "the context was deleted")

    async def stop_sandbox(self, sandbox_id: str) -> None:
        """Every context of a sandbox being deleted: kernels, cgroups and sockets go."""
        for ctx in self._of(sandbox_id):
            self._contexts.pop(ctx.id, None)
            await self._stop_kernel(ctx, "the sandbox was deleted")

    async def stop_all(self) -> None:
        for sandbox_id in {c.sandbox_id for c in self._contexts.values()}:
            await self.stop_sandbox(sandbox_id)

    async def reap_idle(self) -> int:
        """Stop contexts idle past CLOCHE_CONTEXT_IDLE_SECONDS (a running cell is never idle)."""
        cutoff = utcnow() - timedelta(seconds=self.settings.context_idle_seconds)
        idle = [c for c in self._contexts.values() if c.last_used_at < cutoff and not c.busy and not c.starting]
        for ctx in idle:
            self._contexts.pop(ctx.id, None)
            await self._stop_kernel(ctx, "idle")
        return len(idle)

    async def _stop_kernel(self, ctx: CodeContext, reason: str | None) -> None:
        """``reason``: what the next cell that starts a kernel in this context tells (None: nothing)."""
        launching, ctx.launching = ctx.launching, None
        if launching is not None and not launching.done():
            launching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await launching
        found, ctx.kernel = ctx.kernel, None
        ctx.ended = reason
        if found is not None:
            await found.stop()
            log.info("kernel stopped", extra={"sandbox_id": ctx.sandbox_id, "context_id": ctx.id, "reason": reason})

    async def _start(self, row: SandboxRow, ctx: CodeContext, prepared: Prepared) -> None:
        """Start the context's kernel over ``prepared`` (the sandbox's Python environment)."""
        ctx.starting = True
        try:
            tools = await self.tools.ensure()
            held = self.execs.secrets.hold(row.tenant, row.secrets)
            folder = self.sandboxes.paths.run / f"kernel-{ctx.id}-{secrets.token_hex(4)}"
            sandbox_env = self.execs.run_env(prepared.exec_env)
            argv, env = kernel.kernel_env(tools.path, sandbox_env, self.launcher)
            spec = RunSpec(
                argv=tuple(argv),
                env={**env.env, **row.env, **held.values},
                cwd=SANDBOX_DIR,
                timeout_seconds=self.settings.context_lifetime_seconds,
                output_limit_bytes=None,  # the kernel's own output goes to its resident log
                limits=run_policy.limits(self.settings, row.limits),
                watchdog=self.sandboxes.quota.watchdog(row),
            )
            mounts = (*env.mounts, Kernel.mount(folder, kernel.CONTEXT_MOUNT))
            profile = self.execs.profile(row, ExecEnv(mounts=mounts, env=env.env), held)  # an exec's jail
            record = prepared.record
            components = {c.name: c.version for c in record.components}
            launched = Kernel(self.residents, folder, KernelLaunch(spec, profile, record.env_key, components))
            ctx.masker = Masker(held.values.values())
            await asyncio.to_thread(launched.prepare_folder)
            await launched.start(row.id, ctx.id, self.settings.context_start_seconds)
            ctx.kernel, ctx.started_once = launched, True
        finally:
            ctx.starting = False
        log.info("kernel started", extra={"sandbox_id": row.id, "context_id": ctx.id, "environment": record.env_key})

    # cells

    async def run(self, call: CodeCall) -> CodeResult:
        """Run one cell (see the module docstring); deleting the sandbox cancels it, as it does an exec."""
        return await self.sandboxes.run_tracked(call.tenant, call.sandbox_id, functools.partial(self._run, call))

    async def _run(self, call: CodeCall) -> CodeResult:
        tenant, sandbox_id, request = call.tenant, call.sandbox_id, call.request
        started = time.monotonic()
        async with self.sandboxes.lock(sandbox_id):
            row = self.sandboxes.get_row(tenant, sandbox_id)
            ctx = self._context(row, request.context_id)
            ctx.busy = True
            try:
                prepared = await self._prepare(row, ctx, request.code, call.on_progress)
                record = prepared.record
                if record.error is not None:
                    return cell_result(
                        ctx.id, ctx.masker, CellOutcome(), started, prepared.record, None, "install_failed"
                    )
                restarted = await self._kernel_for(row, ctx, prepared)
                outcome = await self._execute(ctx, request, call.on_output)
                return cell_result(ctx.id, ctx.masker, outcome, started, prepared.record, restarted)
            finally:
                ctx.busy = False
                ctx.last_used_at = utcnow()
                self.sandboxes.touch(row.id)

    def _context(self, row: SandboxRow, context_id: str | None) -> CodeContext:
        if context_id is not None:
            return self._find(row, context_id)
        default = [c for c in self._of(row.id) if c.default]
        return default[0] if default else self._new(row, default=True)

    async def _prepare(self, row: SandboxRow, ctx: CodeContext, code: str, progress: Progress | None) -> Prepared:
        """The cell's imports join the context's source file; then the file pipeline, as for an exec."""
        root = self.sandboxes.paths.workspace(row.id)
        fresh = [line for line in kernel.cell_imports(code) if line not in ctx.imports]
        if fresh or not ctx.source_written:
            ctx.imports += fresh
            text = SOURCE_HEADER + "".join(f"{line}\n" for line in ctx.imports)
            try:
                await asyncio.to_thread(self._write_source, row, ctx.source, text)
            except OSError as exc:
                raise InvalidRequest(f"cloche keeps each context's imports in {SOURCE_DIR}/: {exc}") from exc
            ctx.source_written = True
        if row.language is None:
            self.sandboxes.store.set_language(row.id, self.python.name)  # as a first .py exec would
        return await self.deps.prepare(row.id, self.python, root, [ctx.source], progress)

    def _write_source(self, row: SandboxRow, rel: str, text: str) -> None:
        root = self.sandboxes.paths.workspace(row.id)
        safefs.make_dir(root, SOURCE_DIR, uid=row.host_uid, gid=row.host_uid)
        safefs.write_file(root, rel, text.encode(), uid=row.host_uid, gid=row.host_uid, max_bytes=None)

    async def _kernel_for(self, row: SandboxRow, ctx: CodeContext, prepared: Prepared) -> str | None:
        """A running kernel that sees ``prepared``'s environment; returns why it was restarted when it was (so
        earlier state is gone), None when it was kept or is the context's first."""
        await self._settle(ctx)
        live = ctx.kernel
        if live is not None and live.alive:
            reason = await self._grow(live, prepared)
            if reason is None:
                return None
            await self._stop_kernel(ctx, reason)
        elif live is not None:  # it died since the last cell
            reason = f"the kernel had ended: {live.death()}"
            await self._stop_kernel(ctx, reason)
        else:
            reason = ctx.ended
        first = not ctx.started_once
        await self._start(row, ctx, prepared)
        return None if first else reason or "the kernel had been stopped"

    async def _grow(self, live: Kernel, prepared: Prepared) -> str | None:
        """Let a running kernel import a grown environment; returns why it cannot (then it is restarted)."""
        record = prepared.record
        key = record.env_key
        if key is None or key in live.env_keys:
            return None
        wanted = {c.name: c.version for c in record.components}
        changed = [f"{n} {v} -> {wanted.get(n, 'removed')}" for n, v in live.components.items() if wanted.get(n) != v]
        if changed:
            return f"packages the kernel could already import changed ({', '.join(changed)}), so it was restarted"
        stored = self.envs.get(key)
        site = self.python.site_packages(stored.path) if stored is not None else None
        if stored is None or site is None or live.connection is None:
            return "the new environment has no packages folder to add, so the kernel was restarted"
        try:
            await asyncio.to_thread(live.link, stored.path, site.relative_to(stored.path), key)
        except OSError as exc:
            return f"the new packages could not be linked into the running kernel ({exc}), so it was restarted"
        code = kernel.added_path_code(f"{kernel.ADDED_MOUNT}/{key}/{site.relative_to(stored.path)}")
        if not await live.connection.run_silently(code, self.settings.context_start_seconds):
            return "the running kernel did not take the new packages, so it was restarted"
        live.env_keys.add(key)
        live.components = wanted
        return None

    async def _execute(self, ctx: CodeContext, request: CodeRequest, sink: CellSink | None) -> CellOutcome:
        live = ctx.kernel
        assert live is not None and live.connection is not None
        settings = self.settings
        timeout = min(request.timeout_seconds or settings.default_timeout_seconds, settings.max_timeout_seconds)
        masker = ctx.masker

        async def shown(kind: str, value: Any) -> None:
            assert sink is not None
            await sink(kind, masker.mask(value) if isinstance(value, str) else masked(value, masker))

        caps = (settings.output_limit_bytes, settings.code_results_limit_bytes)
        outcome = await live.connection.execute(request.code, timeout, live.died(), shown if sink else None, caps)
        live.execution_count = outcome.execution_count or live.execution_count
        if outcome.status == "crashed":
            why = live.death()
            outcome.error = CodeError(name="KernelDied", value=why, traceback="")
            await self._stop_kernel(ctx, f"the kernel died during an earlier cell: {why}")
        elif outcome.stuck:
            message = f"the cell ran past its {timeout:g}s wall clock and did not stop when interrupted"
            outcome.error = CodeError(name="TimeoutError", value=f"{message}; its kernel was stopped", traceback="")
            await self._stop_kernel(ctx, f"an earlier cell {message}, so its kernel was stopped")
        return outcome
