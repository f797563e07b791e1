"""Layer 5: the long tail, verified at run time. A project outside the ranking that pigar's index lists as
shipping the import is installed only when PyPI confirms three facts:

1. it knows the project (a name that was deleted, or never existed, is refused);
2. its first release is at least ``min_age_days`` old (freshly registered names are how slopsquatting works);
3. the current release's wheel really ships the module (its zip central directory, read by range requests).

A candidate that fails is reported with why; when none passes, the import stays unresolved and nothing is
installed. At most ``MAX_CANDIDATES`` projects are asked per import.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap, prefixes
from cloche.ecosystems.python.resolve.answer import Refusal, Resolution
from cloche.ecosystems.python.resolve.pypi_json import PypiJson, PypiUnavailable
from cloche.ecosystems.python.resolve.wheel_files import provides

MAX_CANDIDATES = 3
DAY = 86_400.0


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


class LongTailLayer:
    def __init__(
        self,
        data: ImportMap,
        pypi: PypiJson | None,
        min_age_days: float = 90.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data = data
        self.pypi = pypi
        self.min_age_days = min_age_days
        self.clock = clock

    def candidates(self, module: str) -> tuple[str, ...]:
        """Projects outside the ranking that the shipped index says ship ``module``'s nearest listed prefix. When
        more than ``MAX_CANDIDATES`` do (a namespace such as ``azure``), only those spelled like the dotted import
        ('azure.mgmt.foo' -> azure-mgmt-foo) or named like it are asked."""
        index = self.data.long_tail
        if index is None:
            return ()
        for prefix in prefixes(module):
            listed = index.candidates(prefix)
            if not listed:
                continue
            if len(listed) <= MAX_CANDIDATES:
                return listed
            known = {canonicalize_name(n) for n in listed}
            spelled = [canonicalize_name(p.replace("_", "-")) for p in prefixes(module)]
            return tuple(dict.fromkeys(n for n in spelled if n in known))[:MAX_CANDIDATES]
        return ()

    def resolve(self, module: str) -> Resolution | Refusal | None:
        """None: the index lists nothing for ``module`` (nothing was asked)."""
        names = self.candidates(module)
        if not names:
            return None
        if self.pypi is None:
            return Refusal(module, f"{', '.join(names)} may ship it, but run-time checks with PyPI are off")
        refused = []
        for name in names:
            verdict = self._check(name, module)
            if isinstance(verdict, Resolution):
                return verdict
            refused.append(verdict)
        return Refusal(module, "; ".join(refused))

    def _check(self, name: str, module: str) -> Resolution | str:
        assert self.pypi is not None
        try:
            facts = self.pypi.project(name)
            if not facts.found:
                return f"PyPI has no project named {name!r}"
            if facts.first_upload is None:
                return f"PyPI shows no uploaded files for {name!r}"
            age = (self.clock() - facts.first_upload) / DAY
            if age < self.min_age_days:
                return (
                    f"{facts.name} was first released {age:.0f} days ago ({_day(facts.first_upload)}); projects "
                    f"outside the ranking are installed only after {self.min_age_days:g} days"
                )
            if facts.wheel_url is None:
                return f"{facts.name} {facts.version} has no wheel whose files could be checked"
            shipped = self.pypi.wheel_modules(facts.wheel_url)
        except PypiUnavailable as e:
            return f"PyPI could not be asked about {name!r} ({e})"
        if not provides(shipped, module):
            return f"{facts.wheel_filename} does not ship {module}"
        return Resolution(
            module,
            facts.name,
            "long tail",
            f"{facts.name} is outside the download ranking; PyPI shows its first release on {_day(facts.first_upload)} "
            f"({age:.0f} days ago) and its wheel {facts.wheel_filename} ships {module}",
        )
