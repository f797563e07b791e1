"""Layers 3 and 4: the generated map (ranked projects whose files ship the module, best download rank first),
then the ranked project named exactly like a top-level import that the map has nothing for."""

from __future__ import annotations

from collections.abc import Sequence

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.resolve.answer import Resolution


def _map_reason(module: str, providers: Sequence[str], rank: int | None) -> str:
    where = f" (download rank {rank})" if rank is not None else ""
    if len(providers) == 1:
        return f"{providers[0]}{where} is the only ranked PyPI project that ships {module}"
    others = ", ".join(providers[1:4]) + (", ..." if len(providers) > 4 else "")
    return f"{providers[0]}{where} is the most downloaded of the projects that ship {module} (also: {others})"


class GeneratedMap:
    def __init__(self, data: ImportMap) -> None:
        self.data = data

    def at(self, prefix: str) -> Resolution | None:
        if "." not in prefix and self.data.shared_namespace(prefix):
            return None  # 'google' alone is protobuf's as much as google-auth's: only a namespace rule can tell
        providers = self.data.providers(prefix)
        if not providers:
            return None
        return Resolution(prefix, providers[0], "map", _map_reason(prefix, providers, self.data.rank(providers[0])))


class RankedName:
    def __init__(self, data: ImportMap) -> None:
        self.data = data

    def at(self, prefix: str) -> Resolution | None:
        data = self.data
        if "." in prefix or data.providers(prefix) or prefix in data.namespaces or data.ships_anything(prefix):
            return None
        rank = self.data.rank(prefix)
        if rank is None:
            return None
        name = canonicalize_name(prefix)
        return Resolution(
            prefix,
            name,
            "ranked name",
            f"{name} is a ranked PyPI project (download rank {rank}) named like the import; the generated data "
            "lists no modules for it",
        )
