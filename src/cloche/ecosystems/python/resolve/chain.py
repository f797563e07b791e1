"""The resolver: import name -> the PyPI project to install, through layers tried in a fixed order.

For each dotted prefix of the import, longest first (the most specific claim wins), the offline layers are asked
in order: reviewed overrides, namespace rules, the generated map, the ranked exact name. Only when none answers
for any prefix is the long tail asked, which checks candidates with PyPI (cached). Every answer carries the layer
that vouched (``source``) and a ``reason``; an import nothing vouches for gets a ``Refusal`` whose reason becomes
its hint, and nothing is ever installed for it: guessing a project from an import's spelling is what
slopsquatting relies on.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from cloche.ecosystems.python.importmap import ImportMap, prefixes, valid_module
from cloche.ecosystems.python.resolve.answer import OfflineLayer, Refusal, Resolution
from cloche.ecosystems.python.resolve.generated import GeneratedMap, RankedName
from cloche.ecosystems.python.resolve.long_tail import LongTailLayer
from cloche.ecosystems.python.resolve.namespaces import NamespaceRules
from cloche.ecosystems.python.resolve.overrides import Overrides
from cloche.ecosystems.python.resolve.pypi_json import PypiJson
from cloche.ecosystems.release_age import MinimumAge

LOOKUP_THREADS = 8


class Resolver:
    def __init__(self, data: ImportMap | None = None, pypi: PypiJson | None = None, min_age_days: float = 90.0) -> None:
        self.data = ImportMap.load() if data is None else data
        self.offline: tuple[OfflineLayer, ...] = (
            Overrides(self.data),
            NamespaceRules(self.data),
            GeneratedMap(self.data),
            RankedName(self.data),
        )
        self.long_tail = LongTailLayer(self.data, pypi, MinimumAge(min_age_days))

    def resolve_offline(self, module: str) -> Resolution | None:
        """The shipped data's answer (no network), or None."""
        module = module.strip()
        if not valid_module(module):
            return None
        for prefix in prefixes(module):
            for layer in self.offline:
                answer = layer.at(prefix)
                if answer is not None:
                    return answer
        return None

    def resolve(self, module: str) -> Resolution | Refusal:
        """The project for ``module``, or why nothing vouches for one (the long tail may ask PyPI)."""
        module = module.strip()
        if not valid_module(module):
            return Refusal(module, f"{module!r} is not an import name")
        answer = self.resolve_offline(module)
        if answer is not None:
            return answer
        top = module.partition(".")[0]
        if top in self.data.python2:
            return Refusal(
                module,
                f"{top} is Python 2's name for the standard library's {self.data.python2[top]}: the script was "
                "written for Python 2 and needs porting, not a package",
            )
        verified = self.long_tail.resolve(module)
        if verified is not None:
            return verified
        return Refusal(module, f"no ranked PyPI project ships {module!r} and no known project outside the ranking does")

    def resolve_all(self, modules: Iterable[str]) -> dict[str, Resolution | Refusal]:
        """``resolve`` for many imports: the offline ones at once, the long-tail look-ups side by side."""
        wanted = list(dict.fromkeys(modules))
        answers: dict[str, Resolution | Refusal] = {}
        pending = []
        for module in wanted:
            offline = self.resolve_offline(module)
            if offline is not None:
                answers[module] = offline
            else:
                pending.append(module)
        if len(pending) > 1:
            with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
                answers.update(zip(pending, pool.map(self.resolve, pending), strict=True))
        elif pending:
            answers[pending[0]] = self.resolve(pending[0])
        return {module: answers[module] for module in wanted}
