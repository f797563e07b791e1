"""Layer 1: reviewed overrides (``data/overrides.toml``), for what the generated data cannot express; a script
that imports a known runtime need itself (``pkg_resources``) gets the project that table names."""

from __future__ import annotations

from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.resolve.answer import Resolution


class Overrides:
    def __init__(self, data: ImportMap) -> None:
        self.data = data

    def at(self, prefix: str) -> Resolution | None:
        override = self.data.overrides.get(prefix) or self.data.runtime_needs.get(prefix)
        if override is None:
            return None
        return Resolution(prefix, override.distribution, "override", f"reviewed override: {override.reason}")
