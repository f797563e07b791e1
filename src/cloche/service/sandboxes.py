"""Sandbox lifecycle: create, look up (tenant-scoped), delete, expire, and reconcile after a crash."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, get_args

from pydantic import ValidationError

from cloche.errors import PoolExhausted, SandboxExpired, SandboxNotFound, TenantQuotaExceeded
from cloche.jail import supervisor
from cloche.jail.profile import Isolation
from cloche.models import CreateSandbox, Language, Limits, Sandbox
from cloche.paths import DataPaths
from cloche.service.audit_trail import AuditTrail
from cloche.service.ids import new_sandbox_id, utcnow
from cloche.service.quota import WorkspaceQuota
from cloche.service.records import DependencyRecord
from cloche.settings import Settings
from cloche.store import safefs
from cloche.store.metadata import MetadataStore, SandboxRow

T = TypeVar("T")

log = logging.getLogger("cloche.service")


LANGUAGES = frozenset(get_args(Language))
KILL_WAIT_SECONDS = 10.0  # how long a delete waits for its sandbox's runs to record that they were killed


def _expiry(row: SandboxRow) -> datetime | None:
    if row.ttl_seconds is None:
        return None
    try:
        return row.last_used_at + timedelta(seconds=row.ttl_seconds)
    except (OverflowError, ValueError):  # past year 9999, or NaN
        return datetime.max.replace(tzinfo=UTC)


def stored_limits(raw: Mapping[str, object]) -> Limits:
    """Stored limits as the API shows them; a field that no longer validates is dropped, not fatal."""
    try:
        return Limits.model_validate(raw)
    except ValidationError as exc:
        bad = {str(err["loc"][0]) for err in exc.errors() if err.get("loc")}
        return Limits.model_validate({k: v for k, v in raw.items() if k not in bad and k in Limits.model_fields})


class SandboxService:
    """Owns sandbox records, their workspaces and their per-sandbox locks."""

    def __init__(
        self,
        settings: Settings,
        paths: DataPaths,
        store: MetadataStore,
        audit: AuditTrail,
        require_isolation: Callable[[Isolation], Awaitable[None]],
    ) -> None:
        """``require_isolation`` raises ``IsolationUnavailable`` for a tier that cannot run here (the runner's)."""
        self.settings = settings
        self.require_isolation = require_isolation
        self.paths = paths
        self.store = store
        self.audit = audit
        self._uid_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: dict[str, set[asyncio.Task[object]]] = {}
        self._reserved: set[int] = set()  # uids of sandboxes whose workspace is being made
        self._creating: Counter[str] = Counter()  # per tenant: creates past the quota check, not stored yet
        self.quota = WorkspaceQuota(settings, paths)
        self._on_destroy: list[Callable[[str], Awaitable[object]]] = []

    # lookup

    def get_row(self, tenant: str, sandbox_id: str) -> SandboxRow:
        row = self.store.get_sandbox(sandbox_id)
        if row is None or row.tenant != tenant:
            raise SandboxNotFound(f"no sandbox {sandbox_id!r}; list yours with GET /v1/sandboxes")
        if row.deleted_at is not None:
            when = row.deleted_at.isoformat(timespec="seconds")
            if row.deleted_reason == "expired":
                raise SandboxExpired(
                    f"sandbox {sandbox_id} expired after {row.ttl_seconds:g}s idle and was deleted at {when}"
                )
            raise SandboxNotFound(f"sandbox {sandbox_id} was deleted at {when}")
        return row

    def view(self, row: SandboxRow) -> Sandbox:
        """The API's view of a row; a stored value the API cannot show (written by hand, or by an older
        version) is shown as unset instead of failing every listing that includes it."""
        busy = any(not t.done() for t in self._running.get(row.id, ()))
        return Sandbox(
            id=row.id,
            language=row.language if row.language in LANGUAGES else None,
            status="running" if busy else "ready",
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=_expiry(row),
            ttl_seconds=row.ttl_seconds if row.ttl_seconds is None or math.isfinite(row.ttl_seconds) else None,
            limits=stored_limits(row.limits),
            env_keys=sorted(row.env),
            egress=self.egress_hosts(row),
            secrets=row.secrets,
            isolation=row.isolation,
        )

    def egress_hosts(self, row: SandboxRow) -> list[str]:
        if row.egress is not None:
            return list(row.egress)
        return list(self.settings.host_list(self.settings.egress_allow))

    def lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def track(self, sandbox_id: str, task: asyncio.Task[object]) -> None:
        self._running.setdefault(sandbox_id, set()).add(task)
        task.add_done_callback(lambda t: self._running.get(sandbox_id, set()).discard(t))

    async def run_tracked(
        self,
        tenant: str,
        sandbox_id: str,
        work: Callable[[], Coroutine[Any, Any, T]],
        killed: Callable[[], T | None] = lambda: None,
    ) -> T:
        """Run ``work()`` in a task of its own, which deleting the sandbox cancels; cancelling the caller (a client
        that went away) cancels it too, and then the caller's cancellation goes on up. Cancelled by a deletion,
        it answers ``killed()`` when that has an answer, else the deleted sandbox's 404."""
        row = self.get_row(tenant, sandbox_id)
        task = asyncio.create_task(work())
        self.track(row.id, task)
        try:
            return await task
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if caller is not None and caller.cancelling():
                raise
            answer = killed()
            if answer is not None:
                return answer
            self.get_row(tenant, sandbox_id)
            raise

    def on_destroy(self, hook: Callable[[str], Awaitable[object]]) -> None:
        """``hook(sandbox_id)`` runs when a sandbox is deleted or expires, after its runs were cancelled and before
        its processes are killed and its workspace removed (residents stop here)."""
        self._on_destroy.append(hook)

    def workspace(self, row: SandboxRow) -> os.PathLike[str]:
        return self.paths.workspace(row.id)

    # lifecycle

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        now = utcnow()
        ttl = request.ttl_seconds if request.ttl_seconds is not None else self.settings.default_ttl_seconds
        isolation = request.isolation or self.settings.isolation
        await self.require_isolation(isolation)  # a 422 now, never a silent fallback to another tier
        async with self._uid_lock:
            self._check_tenant_quota(tenant)
            uid = self._free_uid()
            self._reserved.add(uid)
            self._creating[tenant] += 1
        row = SandboxRow(
            id=new_sandbox_id(),
            tenant=tenant,
            language=request.language,
            host_uid=uid,
            created_at=now,
            last_used_at=now,
            ttl_seconds=ttl,
            limits=(request.limits or Limits()).model_dump(exclude_none=True),
            env=request.env or {},
            egress=request.egress,
            secrets=list(dict.fromkeys(request.secrets or [])),
            placement=self.settings.node_name,
            isolation=isolation,
        )
        try:
            # The workspace (a volume: mkfs and mount) is complete before the row exists, so a crash in between
            # leaves only a workspace without a sandbox, which start-up removes.
            await asyncio.to_thread(self.quota.make_workspace, row)
            try:
                self.store.insert_sandbox(row)
            except BaseException:
                await asyncio.to_thread(self.quota.remove_workspace, row.id)
                raise
        finally:
            self._reserved.discard(uid)
            self._creating[tenant] -= 1
        await self.audit.sandbox_created(row)
        log.info("sandbox created", extra={"sandbox_id": row.id, "tenant": tenant, "host_uid": uid})
        return self.view(row)

    def _check_tenant_quota(self, tenant: str) -> None:
        """One tenant never holds more than its share of the pool (creates in flight count too)."""
        most = self.settings.max_sandboxes_per_tenant
        if len(self.store.list_sandboxes(tenant)) + self._creating[tenant] >= most:
            raise TenantQuotaExceeded(
                f"this API key's tenant already has {most} live sandboxes (CLOCHE_MAX_SANDBOXES_PER_TENANT); "
                "delete one before creating another"
            )

    def _free_uid(self) -> int:
        used = self.store.used_uids(self.settings.node_name)  # another node's uids are its own business
        base, count = self.settings.uid_base, self.settings.uid_count
        for uid in range(base, base + count):
            if uid not in used and uid not in self._reserved:
                return uid
        raise PoolExhausted(f"all {count} sandbox uids are in use; delete sandboxes or raise CLOCHE_UID_COUNT")

    def list(self, tenant: str) -> list[Sandbox]:
        return [self.view(r) for r in self.store.list_sandboxes(tenant)]

    async def delete(self, tenant: str, sandbox_id: str, reason: str = "deleted") -> None:
        row = self.get_row(tenant, sandbox_id)
        await self._destroy(row, reason)

    async def _destroy(self, row: SandboxRow, reason: str) -> None:
        # Tombstone first: from here on the sandbox answers 404 even if the cleanup below is interrupted.
        self.store.mark_deleted(row.id, utcnow(), reason)
        running = list(self._running.get(row.id, ()))
        for task in running:
            task.cancel("the sandbox was deleted" if reason == "deleted" else f"the sandbox was removed ({reason})")
        if running:  # their runs are recorded as killed, output kept, before the sandbox is gone
            await asyncio.wait(running, timeout=KILL_WAIT_SECONDS)
        for hook in self._on_destroy:
            await hook(row.id)
        supervisor.kill_uid_range(row.host_uid, row.host_uid + 1)
        await asyncio.to_thread(self.quota.remove_workspace, row.id)
        await self.audit.sandbox_deleted(row.id, reason)
        self._locks.pop(row.id, None)
        self._running.pop(row.id, None)
        log.info("sandbox deleted", extra={"sandbox_id": row.id, "reason": reason})

    async def reap_expired(self) -> int:
        expired = self.store.expired_sandboxes(utcnow(), self.settings.node_name)
        for row in expired:
            if self.lock(row.id).locked():
                continue  # an exec is running; it resets idleness when it ends
            await self._destroy(row, "expired")
        return len(expired)

    def touch(self, sandbox_id: str) -> None:
        self.store.touch_sandbox(sandbox_id, utcnow())

    async def reconcile(self) -> None:
        """After a crash: fail (and audit) runs left running, kill strays of the uid pool, mount every live
        workspace volume, drop half-made and orphaned workspaces."""
        node = self.settings.node_name  # other nodes sharing the database keep their runs and workspaces
        failed = self.store.fail_unfinished_runs(utcnow(), "the server stopped during this run", node)
        for run in failed:
            self.audit.run_aborted(run, DependencyRecord.from_json(run.extra))  # run_finished, with the reason
        base, count = self.settings.uid_base, self.settings.uid_count
        killed = supervisor.kill_uid_range(base, base + count)
        live = self.store.live_sandbox_ids(node)
        removed = await asyncio.to_thread(self.quota.reconcile, live)
        for entry in self.paths.workspaces.iterdir():
            if entry.name not in live:
                await asyncio.to_thread(self.quota.remove_workspace, entry.name)
                removed += 1
        for scratch in (self.paths.tmp, self.paths.run):
            for entry in scratch.iterdir():
                await asyncio.to_thread(safefs.remove_tree, entry)
        log.info(
            "reconciled after start",
            extra={"runs_failed": len(failed), "processes_killed": killed, "workspaces_removed": removed},
        )
