"""The dependency record of one exec: built once by the dependency step, serialised once into the run row,
read back (typed) by the response, the audit trail and the evidence endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from cloche.ecosystems.base import Component, Lock
from cloche.models import ImportSuggestion, InstallReport, UnresolvedImport


class DependencyRecord(BaseModel):
    """What an exec ran with. Field names are the keys of the stored run JSON (``RunRow.extra``)."""

    ecosystem: str | None = None
    toolchain: dict[str, str] = Field(default_factory=dict)  # ecosystem -> ABI, for the SBOM
    install: InstallReport | None = None  # None for commands (no dependency step ran)
    unlisted_imports: list[ImportSuggestion] = Field(default_factory=list)
    unresolved_imports: list[UnresolvedImport] = Field(default_factory=list)
    lock: str | None = None
    components: list[Component] = Field(default_factory=list)
    env_key: str | None = None

    @classmethod
    def of(
        cls,
        ecosystem: str | None = None,
        abi: str | None = None,
        *,
        install: InstallReport | None = None,
        unlisted: tuple[Mapping[str, str | None], ...] | list[Mapping[str, str | None]] = (),
        unresolved: tuple[Mapping[str, str | None], ...] | list[Mapping[str, str | None]] = (),
        lock: Lock | None = None,
        env_key: str | None = None,
    ) -> DependencyRecord:
        return cls(
            ecosystem=ecosystem,
            toolchain={ecosystem: abi} if ecosystem and abi else {},
            install=install,
            unlisted_imports=[ImportSuggestion.model_validate(u) for u in unlisted],
            unresolved_imports=[UnresolvedImport.model_validate(u) for u in unresolved],
            lock=lock.text if lock else None,
            components=list(lock.components) if lock else [],
            env_key=env_key,
        )

    @property
    def error(self) -> str | None:
        """The installer's error when the dependency step failed."""
        return self.install.error if self.install else None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> DependencyRecord:
        """The record of a stored run (keys the record does not know, like ``egress_denied``, are ignored)."""
        return cls.model_validate(stored)
