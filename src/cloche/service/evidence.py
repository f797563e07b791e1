"""What a run leaves for auditors: its lock, its SBOM, and the diff between two runs' dependencies."""

from __future__ import annotations

from typing import Any

from cloche.errors import InvalidRequest, RunNotFound
from cloche.sbom import build_sbom, diff_components
from cloche.service.records import DependencyRecord
from cloche.service.sandboxes import SandboxService
from cloche.store.metadata import RunRow


class EvidenceService:
    def __init__(self, sandboxes: SandboxService) -> None:
        self.sandboxes = sandboxes

    def _run(self, tenant: str, sandbox_id: str, run_id: str) -> RunRow:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        run = self.sandboxes.store.get_run(row.id, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} in sandbox {sandbox_id}")
        return run

    def lock(self, tenant: str, sandbox_id: str, run_id: str) -> dict[str, Any]:
        """The exact dependency record the run executed with."""
        run = self._run(tenant, sandbox_id, run_id)
        record = DependencyRecord.from_json(run.extra)
        return {
            "run_id": run.id,
            "ecosystem": record.ecosystem,
            "source": record.install.source if record.install else "none",
            "environment": record.env_key,
            "lock": record.lock,
            "components": [c.to_dict() for c in record.components],
        }

    def sbom(self, tenant: str, sandbox_id: str, run_id: str) -> dict[str, Any]:
        run = self._run(tenant, sandbox_id, run_id)
        record = DependencyRecord.from_json(run.extra)
        entry = run.argv[1] if len(run.argv) > 1 and run.argv[0] != "/bin/sh" else None
        return build_sbom(
            sandbox_id=run.sandbox_id,
            run_id=run.id,
            entry=entry,
            argv=run.argv,
            toolchain=record.toolchain,
            components=record.components,
            environment_key=record.env_key,
            timestamp=run.started_at,
        )

    def diff(self, tenant: str, sandbox_id: str, from_run: str, to_run: str) -> dict[str, Any]:
        if not from_run or not to_run:
            raise InvalidRequest("give both 'from' and 'to' run ids")
        old = self._run(tenant, sandbox_id, from_run)
        new = self._run(tenant, sandbox_id, to_run)
        old_components = [c.to_dict() for c in DependencyRecord.from_json(old.extra).components]
        new_components = [c.to_dict() for c in DependencyRecord.from_json(new.extra).components]
        changes = diff_components(old_components, new_components)
        return {"from": old.id, "to": new.id, **changes}
