"""Which PyPI distribution provides a Python import, for scripts that come without a manifest.

This is also the slopsquatting guard: a name is only ever resolved when something vouches for it,
either a reviewed override (``data/overrides.toml``) or the generated map of what the most
downloaded projects' wheels really ship (``data/import_map.json``, refreshed by
``scripts/gen_import_map.py``). Nothing is guessed from the import's spelling, because
registering the distribution an AI model hallucinates from an import name is exactly the attack.
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from packaging.utils import canonicalize_name

_DATA_PACKAGE = "cloche.ecosystems.python"


@dataclass(frozen=True, slots=True)
class Resolution:
    """How an import was resolved.

    ``module`` is the key that matched (a dotted prefix of the requested import, or the whole of
    it), ``distribution`` the project to install and ``reason`` a sentence for logs and users.
    """

    module: str
    distribution: str
    source: Literal["override", "map"]
    reason: str


@dataclass(frozen=True, slots=True)
class Override:
    distribution: str
    reason: str


def _prefixes(module: str) -> Iterator[str]:
    """'a.b.c' -> 'a.b.c', 'a.b', 'a': the longest (most specific) claim wins."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        yield ".".join(parts[:end])


def _valid_module(module: str) -> bool:
    return bool(module) and all(part.isidentifier() for part in module.split("."))


class ImportMap:
    """Import name -> distribution, built from overrides, the generated map and the ranking."""

    def __init__(
        self,
        modules: Mapping[str, Sequence[str]],
        overrides: Mapping[str, Override],
        ranking: Iterable[str],
        *,
        projects: int = 0,
        generated: str = "",
    ) -> None:
        # Provider lists arrive best download rank first; only the head is ever installed, the
        # rest is kept for the reason text.
        self._modules = {name: tuple(dists) for name, dists in modules.items() if dists}
        self._overrides = dict(overrides)
        self._known = frozenset(canonicalize_name(name) for name in ranking)
        self.projects = projects
        self.generated = generated

    @classmethod
    def load(cls) -> ImportMap:
        """The map shipped with cloche; parsed once per process."""
        return _load_packaged()

    @classmethod
    def from_data(cls, import_map: Mapping[str, Any], overrides_toml: str, ranking_text: str) -> ImportMap:
        """Build from the contents of the three data files (see ``data/``)."""
        return cls(
            import_map.get("modules", {}),
            parse_overrides(overrides_toml),
            parse_ranking(ranking_text),
            projects=int(import_map.get("projects", 0)),
            generated=str(import_map.get("generated", "")),
        )

    @property
    def overrides(self) -> Mapping[str, Override]:
        return self._overrides

    @property
    def known_distributions(self) -> int:
        return len(self._known)

    def resolve(self, module: str) -> Resolution | None:
        """The distribution that provides ``module`` (e.g. ``google.cloud.storage.blob``).

        Overrides are searched first, longest dotted prefix first, then the generated map the
        same way. None means nothing vouches for the name: the caller must not install anything
        for it (and in particular must not try a distribution spelled like the import).
        """
        module = module.strip()
        if not _valid_module(module):
            return None
        for prefix in _prefixes(module):
            override = self._overrides.get(prefix)
            if override is not None:
                return Resolution(prefix, override.distribution, "override", override.reason)
        for prefix in _prefixes(module):
            providers = self._modules.get(prefix)
            if providers:
                return Resolution(prefix, providers[0], "map", _map_reason(prefix, providers))
        return None

    def providers(self, module: str) -> tuple[str, ...]:
        """Every project the generated map says ships the longest known prefix of ``module``, best download
        rank first (what recovery tries, in order, when the chosen one does not provide the module)."""
        for prefix in _prefixes(module.strip()):
            providers = self._modules.get(prefix)
            if providers:
                return providers
        return ()

    def is_known_distribution(self, name: str) -> bool:
        """Whether ``name`` (any PEP 503 spelling) is among the ranked, most downloaded projects."""
        return canonicalize_name(name.strip()) in self._known


def _map_reason(module: str, providers: Sequence[str]) -> str:
    if len(providers) == 1:
        return f"{providers[0]} is the only ranked PyPI project whose wheel ships {module}"
    others = ", ".join(providers[1:4]) + (", ..." if len(providers) > 4 else "")
    return f"{providers[0]} is the most downloaded of the projects whose wheels ship {module} (also: {others})"


def parse_overrides(text: str) -> dict[str, Override]:
    """``[modules."<import>"] dist = ... reason = ...`` tables; malformed entries are errors."""
    table = tomllib.loads(text).get("modules", {})
    result: dict[str, Override] = {}
    for module, entry in table.items():
        dist, reason = entry.get("dist"), entry.get("reason")
        if not (isinstance(dist, str) and dist.strip() and isinstance(reason, str) and reason.strip()):
            raise ValueError(f"override {module!r} needs a non-empty dist and reason")
        if not _valid_module(module):
            raise ValueError(f"override key {module!r} is not a dotted import name")
        result[module] = Override(dist.strip(), reason.strip())
    return result


def parse_ranking(text: str) -> list[str]:
    """Names from ``rank<TAB>name`` lines, best first; '#' lines are comments."""
    names: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(line.split("\t")[-1].strip())
    return names


@functools.cache
def _load_packaged() -> ImportMap:
    data = resources.files(_DATA_PACKAGE).joinpath("data")
    return ImportMap.from_data(
        json.loads(data.joinpath("import_map.json").read_text(encoding="utf-8")),
        data.joinpath("overrides.toml").read_text(encoding="utf-8"),
        data.joinpath("top_pypi.txt").read_text(encoding="utf-8"),
    )
