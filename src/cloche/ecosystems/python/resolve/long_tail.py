"""Layer 5: the long tail, verified at run time. A project outside the ranking that pigar's index lists as
shipping the import is installed only when PyPI confirms three facts:

1. it knows the project (a name that was deleted, or never existed, is refused);
2. its first release is old enough (release_age.py: freshly registered names are how slopsquatting works);
3. the current release's wheel really ships the module (its zip central directory, read by range requests).

A project whose classifiers name only Windows or only macOS is refused with that reason: installed on Linux, where
cloche runs code, it could not be imported (its platform-only dependencies do not even build), and the user should
learn that, not read an installer's build failure.

A candidate that fails is reported with why; when none passes, the import stays unresolved and nothing is
installed. At most ``MAX_CANDIDATES`` projects are asked per import.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap, prefixes
from cloche.ecosystems.python.resolve.answer import Refusal, Resolution
from cloche.ecosystems.python.resolve.pypi_json import ProjectFacts, PypiJson, PypiUnavailable
from cloche.ecosystems.python.resolve.wheel_files import provides
from cloche.ecosystems.release_age import MinimumAge, day

MAX_CANDIDATES = 3


def only_on(platforms: tuple[str, ...]) -> str | None:
    """ "Windows" or "macOS" when a project's operating-system classifiers name only that family; None when they
    name Linux, POSIX, Unix, "OS Independent" or nothing."""
    systems = [c for c in platforms if c.startswith("Operating System ::")] or list(platforms)
    families = set()
    for classifier in systems:
        if "Microsoft" in classifier or "Win32" in classifier:
            families.add("Windows")
        elif "MacOS" in classifier or ":: iOS" in classifier:
            families.add("macOS")
        else:
            return None
    return families.pop() if len(families) == 1 else None


def runs_elsewhere(facts: ProjectFacts) -> str | None:
    """Why a project cannot be imported on Linux, from its PyPI classifiers or, failing those, its current
    release's files (wheels for one other operating system only, no source archive); None when it can be."""
    if (system := only_on(facts.platforms)) is not None:
        evidence = f"its PyPI classifiers: {'; '.join(facts.platforms)}"
    elif len(facts.files_for) == 1 and facts.files_for[0] in ("Windows", "macOS"):
        system, evidence = facts.files_for[0], f"{facts.version} has wheels for {facts.files_for[0]} only"
    else:
        return None
    return f"{facts.name} runs only on {system} ({evidence}); cloche runs code on Linux, where it cannot be imported"


class LongTailLayer:
    def __init__(self, data: ImportMap, pypi: PypiJson | None, age: MinimumAge = MinimumAge()) -> None:
        self.data = data
        self.pypi = pypi
        self.age = age

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
            young = self.age.refusal(facts.name, facts.first_upload, "projects outside the ranking")
            if young is not None:
                return young
            if (elsewhere := runs_elsewhere(facts)) is not None:
                return elsewhere
            if facts.wheel_url is None:
                return f"{facts.name} {facts.version} has no wheel whose files could be checked"
            shipped = self.pypi.wheel_modules(facts.wheel_url)
        except PypiUnavailable as e:
            return f"PyPI could not be asked about {name!r} ({e})"
        if not provides(shipped, module):
            return f"{facts.wheel_filename} does not ship {module}"
        age = self.age.age_days(facts.first_upload)
        return Resolution(
            module,
            facts.name,
            "long tail",
            f"{facts.name} is outside the download ranking; PyPI shows its first release on {day(facts.first_upload)} "
            f"({age:.0f} days ago) and its wheel {facts.wheel_filename} ships {module}",
        )
