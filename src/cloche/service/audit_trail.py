"""The audit trail: one method per recorded event, each appended (fsync'd) to the hash-chained log.

Appends run in a worker thread so the fsync never stalls the event loop. ``exec_requested`` is written while the
run starts rather than before (a thread hop and an fsync off each exec's path); every later append, the run's
``run_finished`` included, waits for it first, so records keep their order and an exec is answered only once
both are durable.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloche.models import FileEntry
from cloche.service.records import DependencyRecord
from cloche.steps import mark
from cloche.store.audit_log import AuditLog
from cloche.store.metadata import RunRow, SandboxRow
from cloche.store.tree_hash import DigestCache, tree_hash

DIGEST_CACHES = 64


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AuditTrail:
    def __init__(self, log: AuditLog) -> None:
        self.log = log
        # Per-workspace file digests, so each run re-reads only what changed (most recent workspaces only).
        self._digests: OrderedDict[Path, DigestCache] = OrderedDict()
        self._pending: asyncio.Future[None] | None = None  # an append not waited for yet (exec_requested)

    async def _append(self, event: str, sandbox_id: str | None, **fields: Any) -> None:
        await self._settle()
        await asyncio.to_thread(self.log.append, event, sandbox_id, **fields)

    async def _settle(self) -> None:
        """Wait for the append still in flight, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    def _append_soon(self, event: str, sandbox_id: str | None, **fields: Any) -> None:
        previous = self._pending

        async def append() -> None:
            if previous is not None:
                await previous
            await asyncio.to_thread(self.log.append, event, sandbox_id, **fields)

        self._pending = asyncio.ensure_future(append())

    async def sandbox_created(self, row: SandboxRow) -> None:
        await self._append("sandbox_created", row.id, tenant=row.tenant, language=row.language, host_uid=row.host_uid)

    async def sandbox_deleted(self, sandbox_id: str, reason: str) -> None:
        await self._append("sandbox_deleted", sandbox_id, reason=reason)

    async def files_written(self, sandbox_id: str, entries: Sequence[FileEntry], archive: bool = False) -> None:
        if archive:
            files = [{"path": e.path, "sha256": e.sha256} for e in entries if e.type == "file"]
            await self._append("archive_extracted", sandbox_id, files=files)
            return
        for entry in entries:
            await self._append("file_written", sandbox_id, path=entry.path, sha256=entry.sha256, size=entry.size)

    async def file_deleted(self, sandbox_id: str, path: str) -> None:
        await self._append("file_deleted", sandbox_id, path=path)

    async def process_started(self, sandbox_id: str, process_id: str, command: str, env_key: str | None) -> None:
        await self._append("process_started", sandbox_id, process_id=process_id, command=command, env_key=env_key)

    async def process_ended(self, sandbox_id: str, process_id: str, status: str, exit_code: int | None) -> None:
        await self._append("process_ended", sandbox_id, process_id=process_id, status=status, exit_code=exit_code)

    async def exec_requested(self, run: RunRow, entry: str | None) -> None:
        self._append_soon("exec_requested", run.sandbox_id, run_id=run.id, argv=run.argv, entry=entry)

    async def install_performed(self, run: RunRow, record: DependencyRecord) -> None:
        install = record.install
        await self._append(
            "install_performed",
            run.sandbox_id,
            run_id=run.id,
            ecosystem=record.ecosystem,
            source=install.source if install else None,
            lock_sha256=sha256_text(record.lock or ""),
            env_key=record.env_key,
            installed=[p.model_dump() for p in install.installed] if install else [],
        )

    async def run_finished(self, run: RunRow, record: DependencyRecord, workspace: Path) -> None:
        cache = self._digests.pop(workspace, {})
        self._digests[workspace] = cache
        while len(self._digests) > DIGEST_CACHES:
            self._digests.popitem(last=False)
        await self._settle()
        mark("audit: exec_requested durable")

        def hash_then_append() -> None:  # one worker-thread hop for both
            tree = _safe_tree_hash(workspace, cache)
            mark("audit: workspace tree hashed")
            self.log.append("run_finished", run.sandbox_id, **_run_fields(run, record, tree))

        await asyncio.to_thread(hash_then_append)
        mark("audit: run_finished appended (fsync)")
        denied = run.extra.get("egress_denied") or []
        if denied:
            await self._append("egress_denied", run.sandbox_id, run_id=run.id, hosts=denied)

    def run_aborted(self, run: RunRow, record: DependencyRecord) -> None:
        """Synchronous: called while the run's task is being cancelled, where awaiting is not possible (after an
        append still in flight, when there is one)."""
        if self._pending is not None and not self._pending.done():
            self._append_soon("run_finished", run.sandbox_id, **_run_fields(run, record, None))
            return
        self.log.append("run_finished", run.sandbox_id, **_run_fields(run, record, None))


def _run_fields(run: RunRow, record: DependencyRecord, tree: str | None) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "argv": run.argv,
        "workspace_tree_sha256": tree,
        "env_key": record.env_key,
        "exit_code": run.exit_code,
        "status": run.status,
        "stdout_sha256": sha256_text(run.stdout),
        "stderr_sha256": sha256_text(run.stderr),
        "duration_ms": run.duration_ms,
        "error": run.error,  # why it ended, when cloche ended it (timed out, killed, cut by a crash)
    }


def _safe_tree_hash(workspace: Path, cache: DigestCache) -> str | None:
    try:
        return tree_hash(workspace, cache)
    except Exception:  # an over-large or vanished workspace: record the run without the hash
        return None
