"""What a run leaves for auditors: its lock, its SBOM, and the diff between two runs' dependencies."""

from __future__ import annotations

from typing import Any

from cloche.ecosystems.base import Component
from cloche.errors import InvalidRequest, RunNotFound
from cloche.sbom import build_sbom, diff_components
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
        extra = run.extra
        install = extra.get("install") or {}
        return {
            "run_id": run.id,
            "ecosystem": extra.get("ecosystem"),
            "source": install.get("source", "none"),
            "environment": extra.get("env_key"),
            "lock": extra.get("lock"),
            "components": extra.get("components") or [],
        }

    def sbom(self, tenant: str, sandbox_id: str, run_id: str) -> dict[str, Any]:
        run = self._run(tenant, sandbox_id, run_id)
        extra = run.extra
        components = [Component(**{**c, "hashes": tuple(c.get("hashes", ()))}) for c in extra.get("components") or []]
        entry = run.argv[1] if len(run.argv) > 1 and run.argv[0] != "/bin/sh" else None
        return build_sbom(
            sandbox_id=run.sandbox_id,
            run_id=run.id,
            entry=entry,
            argv=run.argv,
            toolchain=extra.get("toolchain") or {},
            components=components,
            environment_key=extra.get("env_key"),
            timestamp=run.started_at,
        )

    def diff(self, tenant: str, sandbox_id: str, from_run: str, to_run: str) -> dict[str, Any]:
        if not from_run or not to_run:
            raise InvalidRequest("give both 'from' and 'to' run ids")
        old = self._run(tenant, sandbox_id, from_run)
        new = self._run(tenant, sandbox_id, to_run)
        changes = diff_components(old.extra.get("components") or [], new.extra.get("components") or [])
        return {"from": old.id, "to": new.id, **changes}
