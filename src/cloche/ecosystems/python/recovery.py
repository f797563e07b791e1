"""Verify, then seal: check that a freshly built environment imports what the entry imports; when it does not,
repair it step by step and say what was done.

One loop over one check. Each round runs the check (one jailed interpreter importing every need), picks at
most one repair per failing import, re-locks and re-syncs the environment with all of them, and checks again.
A repair that fixed its import is kept; one that did not is dropped and the import's next repair is tried in
the following round. The repairs, in the order they are tried for an import:

- ``extra``: the import's own error asks for ``pip install pkg[extra]`` (a package of the environment, or a
  ranked project): add it.
- ``runtime_need``: the package imports a module it does not declare (``pkg_resources``): add the project
  the reviewed ``runtime_needs`` table (data/overrides.toml) names for it, else the one the import map vouches
  for.
- ``next_provider`` (imports cloche mapped itself): the chosen project does not ship the module: use the next
  provider by download rank.
- ``version_backoff``: the module lacks a name or a submodule the entry imports from it (API drift), in the
  chosen project, or in a dependency whose own import fails with "cannot import name" or raises "module 'dep' has
  no attribute" (a backed-off release meeting the newest dependency: bokeh 2 and numpy 2): back off to the newest
  release of the previous series (``<major``, or ``<0.minor``); when that release lacks it too, one series
  further back each round, at most ``MAX_BACKOFF`` times per project.

Declared needs (a manifest, an inline block) are never replaced or re-pinned; only additions are made.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cloche.ecosystems.base import ImportFailure, InstallFailed, Lock, RecoveryStep, Verification
from cloche.ecosystems.python.importmap import ImportMap, Override
from cloche.ecosystems.python.lockfile import parse_lock
from cloche.ecosystems.python.needs import ImportNeed
from cloche.ecosystems.python.resolve import Resolver

MAX_ROUNDS = 6
MAX_BACKOFF = 3
_PIP_INSTALL = re.compile(r"pip3?\s+install\s+(?:-U\s+|--upgrade\s+)?['\"]?([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]+\])?)")
_CANNOT_IMPORT = re.compile(r"cannot import name '?([A-Za-z_][\w]*)'? from '([A-Za-z_][\w.]*)'")
# A package's import that reaches for an attribute a dependency removed (bokeh 2 and numpy 2's np.bool8).
_NO_ATTRIBUTE = re.compile(r"AttributeError: module '([A-Za-z_][\w.]*)' has no attribute '([A-Za-z_]\w*)'")
# A shared library the system lacks is not something an install can fix: the package itself is there.
_SYSTEM_LIBRARY = re.compile(r"shared object|undefined symbol|\.so(\.\d+)*\b|DLL load failed")


@dataclass(frozen=True)
class Answer:
    """What the jailed check said about one import (see check_imports.py)."""

    module: str
    kind: str  # "ok", "missing_module", "missing_names", "import_error", "raised"
    missing: str | None = None
    names: tuple[str, ...] = ()
    error: str = ""
    display: bool = False  # it imported only under a virtual X display

    @property
    def ok(self) -> bool:
        if self.kind == "import_error" and _SYSTEM_LIBRARY.search(self.error):
            return True
        if self.kind == "raised":
            return self.dependency_drift() is None
        return self.kind == "ok"

    def dependency_drift(self) -> tuple[str, str] | None:
        """(name, module) when the import failed because another third-party package lacks a name it uses:
        "cannot import name x from dep", "No module named 'dep.x'", or, raised at import time, "module 'dep' has
        no attribute 'x'" (the
        standard library's own removals are not something an older release of it can fix)."""
        if self.kind == "import_error" and (m := _CANNOT_IMPORT.search(self.error)):
            name, module = m.group(1), m.group(2)
        elif self.kind == "missing_module" and "." in (self.missing or ""):
            # "No module named 'moviepy.editor'": moviepy imported, its submodule is gone (moviepy 2).
            module, _, name = (self.missing or "").rpartition(".")
        elif self.kind == "raised" and (m := _NO_ATTRIBUTE.search(self.error)):
            module, name = m.group(1), m.group(2)
        else:
            return None
        top = module.split(".")[0]
        if top == self.module.split(".")[0] or top in sys.stdlib_module_names:
            return None
        return name, module


class Environment(Protocol):
    """The environment being built, as recovery drives it (all in the same install jail)."""

    async def check(self, needs: Sequence[ImportNeed]) -> dict[str, Answer]:
        """One jailed interpreter importing every need; an import with no answer counts as importable."""
        ...

    async def relock(self, requirements: Sequence[str]) -> Lock: ...

    async def sync(self, lock: Lock) -> None:
        """Make the environment hold exactly ``lock``."""
        ...


@dataclass(frozen=True)
class _Repair:
    action: str
    module: str
    requirement: str  # added to the requirements
    replaces: str | None  # canonical project name whose requirement lines it replaces
    detail: str


def runtime_needs() -> Mapping[str, Override]:
    """Module -> project for imports packages make without declaring them (reviewed, in data/overrides.toml)."""
    return ImportMap.load().runtime_needs


def _name(requirement: str) -> str | None:
    try:
        return canonicalize_name(Requirement(requirement.split(" --hash=")[0]).name)
    except InvalidRequirement:
        return None


def _earlier_bound(bound: str) -> str | None:
    """The series before the bound ``"<bound"`` already tried: "5" -> "4", "0.24" -> "0.23"; None past the
    first series (which series comes before 1.0 is not known without asking the index)."""
    try:
        v = Version(bound)
    except InvalidVersion:
        return None
    if v.major >= 2:
        return str(v.major - 1)
    if v.major == 0 and v.minor >= 2:
        return f"0.{v.minor - 1}"
    return None


def skipped_series(lock_text: str, requirements: Sequence[str]) -> bool:
    """Whether a back-off (``pkg<bound``) was locked below the series it asks for: a wheels-only lock settles on
    an ancient release when the series' newest has only a source archive (moviepy<2 -> 0.2.3.1, not 1.0.3)."""
    pins = {canonicalize_name(name): version for name, version, _ in parse_lock(lock_text)}
    for requirement in requirements:
        try:
            parsed = Requirement(requirement)
        except InvalidRequirement:
            continue
        specs = list(parsed.specifier)
        pinned = pins.get(canonicalize_name(parsed.name))
        if len(specs) != 1 or specs[0].operator != "<" or pinned is None:
            continue
        floor = _earlier_bound(specs[0].version)
        try:
            if floor is not None and Version(pinned) < Version(floor):
                return True
        except InvalidVersion:
            continue
    return False


def _series_bound(version: str) -> str | None:
    """The start of ``version``'s release series: newer releases of a series rarely remove names."""
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    if v.major >= 1:
        return str(v.major)
    return f"0.{v.minor}" if v.minor > 0 else None


class _State:
    def __init__(self, needs: Sequence[ImportNeed], requirements: Sequence[str], resolver: Resolver) -> None:
        self.resolver = resolver
        self.requirements = list(requirements)
        self.providers = {n.module: [n.distribution or "", *n.alternatives] for n in needs}
        self.tried: set[tuple[str, str]] = set()  # (module, requirement)
        self.backoffs: dict[str, int] = {}  # project -> tries
        self.bounds: dict[str, str] = {}  # project -> the last "<bound" tried
        # Projects backed off in the current round: two imports failing on the same dependency (bokeh.io and
        # bokeh.models.widgets on numpy) get one back-off of it, not two that would step two series at once.
        self.this_round: set[str] = set()

    def apply(self, repairs: Sequence[_Repair]) -> list[str]:
        out = list(self.requirements)
        for repair in repairs:
            if repair.replaces is not None:
                out = [r for r in out if _name(r) != repair.replaces]
            out.append(repair.requirement)
        return out

    def _fresh(self, repair: _Repair | None) -> _Repair | None:
        if repair is None or (repair.module, repair.requirement) in self.tried:
            return None
        self.tried.add((repair.module, repair.requirement))
        return repair

    def next_repair(self, need: ImportNeed, answer: Answer, lock: Lock) -> _Repair | None:
        for make in (self._extra, self._runtime_need, self._next_provider, self._backoff):
            repair = self._fresh(make(need, answer, lock))
            if repair is not None:
                return repair
        return None

    def _extra(self, need: ImportNeed, answer: Answer, lock: Lock) -> _Repair | None:
        installed = {canonicalize_name(name) for name, _, _ in parse_lock(lock.text)}
        for spec in _PIP_INSTALL.findall(answer.error):
            name = _name(spec)
            if name is None or (name in installed and "[" not in spec):
                continue  # nothing to add: asking for what is there already would not change the lock
            if name in installed or self.resolver.data.is_known_distribution(name):
                return _Repair("extra", need.module, spec, None, f"the import asked for it: {answer.error}")
        return None

    def _runtime_need(self, need: ImportNeed, answer: Answer, lock: Lock) -> _Repair | None:
        missing = answer.missing if answer.kind == "missing_module" else None
        if not missing or missing.split(".")[0] == need.module.split(".")[0]:
            return None
        top = missing.split(".")[0]
        known = runtime_needs().get(missing) or runtime_needs().get(top)
        if known is not None:
            reason = known.reason
            dist = known.distribution
        else:
            resolution = self.resolver.resolve_offline(missing)
            if resolution is None:
                return None
            dist, reason = resolution.distribution, resolution.reason
            pinned = {canonicalize_name(name) for name, _, _ in parse_lock(lock.text)}
            if "." in missing and canonicalize_name(dist) in pinned:
                return None  # the package is there without that submodule: its drift (version_backoff)
        detail = f"{need.module} imports {missing}, which nothing installed provides; {dist}: {reason}"
        return _Repair("runtime_need", need.module, dist, None, detail)

    def _next_provider(self, need: ImportNeed, answer: Answer, lock: Lock) -> _Repair | None:
        if not need.chosen or answer.kind != "missing_module" or answer.missing != need.module.split(".")[0]:
            return None
        providers = self.providers.get(need.module, [])
        if len(providers) < 2:
            return None
        current, following = providers[0], providers[1]
        self.providers[need.module] = providers[1:]
        detail = f"{current} does not ship {answer.missing}; {following} is the next provider by download rank"
        return _Repair("next_provider", need.module, following, canonicalize_name(current), detail)

    def _backoff(self, need: ImportNeed, answer: Answer, lock: Lock) -> _Repair | None:
        project: str | None = None
        # A submodule the package no longer has is API drift; a missing module of another package (keras 3
        # without tensorflow) is a runtime need, and backing the package off series by series would only find
        # an ancient release that does not import it (keras 0.3).
        own = answer.kind == "missing_module" and (answer.missing or "").split(".")[0] == need.module.split(".")[0]
        if need.chosen and need.distribution and (answer.kind == "missing_names" or own):
            project = self.providers.get(need.module, [need.distribution])[0]
        drift = answer.dependency_drift()
        if drift is not None:
            resolution = self.resolver.resolve_offline(drift[1])  # a dependency lacks the name
            project = resolution.distribution if resolution is not None else None
        if project is None:
            return None
        key = canonicalize_name(project)
        if key in self.this_round:
            return None
        versions = {canonicalize_name(name): version for name, version, _ in parse_lock(lock.text)}
        # A back-off that did not help is dropped (the kept lock still holds the newest release): step one
        # series further back than the last bound tried, not from the kept version again.
        tried = self.bounds.get(key)
        bound = _series_bound(versions.get(key, "")) if tried is None else _earlier_bound(tried)
        if bound is None or self.backoffs.get(key, 0) >= MAX_BACKOFF:
            return None
        self.backoffs[key] = self.backoffs.get(key, 0) + 1
        self.bounds[key] = bound
        self.this_round.add(key)
        lacking = ", ".join(answer.names) or answer.missing or (drift[0] if drift else "")
        detail = f"{project} {versions.get(key)} lacks {lacking}; trying its newest release before {bound}"
        return _Repair("version_backoff", need.module, f"{project}<{bound}", key, detail)


def _moved_on(before: Answer, after: Answer) -> bool:
    """The import no longer fails as it did, but in a dependency that lacks a name: the repair is progress."""
    return after.dependency_drift() is not None and after.error != before.error


def _failing(needs: Sequence[ImportNeed], answers: Mapping[str, Answer]) -> dict[str, Answer]:
    return {n.module: answers[n.module] for n in needs if n.module in answers and not answers[n.module].ok}


async def verify(
    needs: Sequence[ImportNeed], requirements: Sequence[str], lock: Lock, env: Environment, resolver: Resolver
) -> Verification:
    """Check ``needs`` against the environment built from ``lock``; repair it in place while repairs remain."""
    if not needs:
        return Verification(lock, 0)
    by_module = {n.module: n for n in needs}
    state = _State(needs, requirements, resolver)
    failing = _failing(needs, await env.check(needs))
    built: Lock | None = lock  # what the environment holds (None: unknown after a failed sync)
    kept = lock  # the lock of ``state.requirements``
    steps: list[RecoveryStep] = []
    for _ in range(MAX_ROUNDS):
        state.this_round = set()
        repairs = [r for m, a in failing.items() if (r := state.next_repair(by_module[m], a, kept)) is not None]
        if not repairs:
            break
        try:
            trial = await env.relock(state.apply(repairs))
        except InstallFailed as exc:
            steps += [_step(r, "not_installable", exc.message) for r in repairs]
            continue
        try:
            await env.sync(trial)
        except InstallFailed as exc:
            built = None
            steps += [_step(r, "not_installable", exc.message) for r in repairs]
            continue
        built = trial
        now = _failing(needs, await env.check(needs))
        # Kept: a repair that fixed its import, or after which it fails only in a dependency that lacks a name
        # (an older bokeh with the newest numpy): the next round backs that dependency off.
        fixed = [r for r in repairs if r.module not in now or _moved_on(failing[r.module], now[r.module])]
        steps += [
            _step(r, "fixed" if r.module not in now else "failed", "" if r.module not in now else now[r.module].error)
            for r in repairs
        ]
        if len(fixed) == len(repairs):
            state.requirements, kept = state.apply(repairs), trial
        elif fixed:
            kept = await _relock_or(env, state.apply(fixed), trial)
            state.requirements = state.apply(fixed if kept is not trial else repairs)
        failing = now
    if built is None or built.text != kept.text:
        await env.sync(kept)  # drop the repairs that did not help
        failing = _failing(needs, await env.check(needs))
    failures = tuple(ImportFailure(m, a.error, a.names) for m, a in sorted(failing.items()))
    return Verification(kept, len(needs), failures, tuple(steps))


async def _relock_or(env: Environment, requirements: Sequence[str], fallback: Lock) -> Lock:
    try:
        return await env.relock(requirements)
    except InstallFailed:
        return fallback


def _step(repair: _Repair, outcome: str, error: str) -> RecoveryStep:
    detail = repair.detail if not error else f"{repair.detail} (then: {error})"
    return RecoveryStep(repair.action, repair.module, repair.requirement, outcome, detail[:2000])
