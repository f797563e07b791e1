"""Ordered registry of ecosystems: order is detection priority."""

from __future__ import annotations

from pathlib import PurePosixPath

from cloche.ecosystems.base import Ecosystem
from cloche.errors import Unsupported

# Languages the API accepts whose runners are not built yet: say so instead of failing obscurely.
PLANNED: dict[str, str] = {}


class EcosystemRegistry:
    def __init__(self, ecosystems: list[Ecosystem]) -> None:
        self.ecosystems = tuple(ecosystems)

    def for_entry(self, entry: str) -> Ecosystem:
        suffix = PurePosixPath(entry).suffix.lower()
        for ecosystem in self.ecosystems:
            if suffix in ecosystem.extensions:
                return ecosystem
        if suffix in PLANNED:
            raise Unsupported(f"running {PLANNED[suffix]} files is not supported yet; use a 'command' instead")
        known = ", ".join(ext for e in self.ecosystems for ext in e.extensions)
        raise Unsupported(f"cannot tell how to run {entry!r}: known extensions are {known}")

    def by_name(self, name: str) -> Ecosystem | None:
        return next((e for e in self.ecosystems if e.name == name), None)
