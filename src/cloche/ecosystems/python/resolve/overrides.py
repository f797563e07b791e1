"""Layer 1: reviewed overrides (``data/overrides.toml``), for what the generated data cannot express; a script
that imports a known runtime need itself (``pkg_resources``) gets the project that table names, and one that imports
the module of a project that publishes only a source archive (``dlib``) gets its prebuilt substitute."""

from __future__ import annotations

from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.resolve.answer import Resolution


class Overrides:
    def __init__(self, data: ImportMap) -> None:
        self.data = data

    def at(self, prefix: str) -> Resolution | None:
        override = self.data.overrides.get(prefix) or self.data.runtime_needs.get(prefix)
        if override is not None:
            return Resolution(prefix, override.distribution, "override", f"reviewed override: {override.reason}")
        substitute = self.data.prebuilt_modules.get(prefix)
        if substitute is None:
            return None
        reason = f"reviewed prebuilt substitute for {substitute.project}: {substitute.reason}"
        return Resolution(prefix, substitute.distribution, "override", reason)
