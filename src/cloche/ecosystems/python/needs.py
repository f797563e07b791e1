"""The imports an environment must satisfy: what verification checks after every build (see recovery.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.resolve import Resolution
from cloche.ecosystems.python.scan import ScanResult


@dataclass(frozen=True, slots=True)
class ImportNeed:
    """One required third-party import of the entry.

    ``module`` is imported as written (``from a.b import x, y`` imports ``a.b``) and ``names`` are what a
    from-import takes from it. ``distribution`` is the project that provides it; ``chosen`` says cloche picked
    it (a scan: recovery may swap it for ``alternatives``, the next providers by rank, or back off its version)
    rather than a manifest declaring it (recovery then only adds what is missing, never overrides a pin).
    """

    module: str
    names: tuple[str, ...]
    distribution: str | None
    chosen: bool
    alternatives: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"module": self.module, "names": list(self.names)}


def import_needs(
    scan: ScanResult,
    resolve: Callable[[str], Resolution | None],
    data: ImportMap,
    *,
    chosen: bool,
    covered: Callable[[str, Resolution | None], bool],
) -> tuple[ImportNeed, ...]:
    """The required imports of ``scan`` that ``covered(module, resolution)`` says the install provides;
    ``resolve`` is the resolver's answer for a dotted name, ``data`` gives the other providers by rank."""
    names: dict[str, set[str]] = {}
    found: dict[str, Resolution] = {}
    for ref in scan.imports:
        if ref.optional:
            continue  # guarded imports may fail by design
        resolution = next((r for r in map(resolve, ref.candidates) if r is not None), None)
        if resolution is None or not covered(ref.module, resolution):
            continue
        names.setdefault(ref.module, set()).update(ref.names)
        found.setdefault(ref.module, resolution)
    needs = []
    for module in sorted(names):
        resolution = found[module]
        dist = canonicalize_name(resolution.distribution)
        others = tuple(p for p in data.providers(resolution.module) if canonicalize_name(p) != dist)
        needs.append(
            ImportNeed(
                module=module,
                names=tuple(sorted(names[module])),
                distribution=resolution.distribution,
                chosen=chosen,
                alternatives=others if chosen else (),
            )
        )
    return tuple(needs)
