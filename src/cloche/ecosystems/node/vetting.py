"""Which scanned packages a script without a package.json gets, and which release of each.

An npm specifier names its package, so there is nothing to guess; the guard's job is to stop invented or
freshly registered names (what slopsquatters publish) while letting every established package through.
A package is vouched for by one of two sources, each answer carrying a reason a user can read:

1. ``popularity list``: it is on the shipped list of the most downloaded npm packages (no look-up).
2. ``registry facts`` (its full packument, cached): the registry knows it, it is not unpublished, its
   latest release is not deprecated, its first release is old enough (release_age.py), and it has a
   history: at least ``MIN_RELEASES`` releases, the newest at least ``MIN_HISTORY_DAYS`` after the first.

Then the release: ``*`` (the ``latest`` tag) when it fits the code (release_fit.py); otherwise the newest
older release that fits, walking back at most ``MAX_BACKOFF`` releases (deprecated ones skipped), each
refused release reported. When none fits, the newest is installed and the misfit reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cloche.ecosystems.node.registry_facts import PackageFacts, RegistryFacts, RegistryUnavailable
from cloche.ecosystems.node.release_fit import Usage, describe, misfits
from cloche.ecosystems.node.semver import Version
from cloche.ecosystems.release_age import DAY, MinimumAge, day

MIN_RELEASES = 2
MIN_HISTORY_DAYS = 14.0
SINGLE_RELEASE_DAYS = 365.0
MAX_BACKOFF = 200  # releases examined (facts only, nothing installs); refused runs are reported compactly
LOOKUP_THREADS = 8
SOURCE_POPULAR = "popularity list"
SOURCE_REGISTRY = "registry facts"


@dataclass(frozen=True)
class Choice:
    """A package to install: ``requirement`` is ``*`` or an exact version chosen by back-off."""

    package: str
    specifier: str
    requirement: str
    source: str
    reason: str
    backoff: tuple[str, ...] = ()  # releases refused on the way, with why

    def to_dict(self) -> dict[str, str | None]:
        steps = "; ".join(self.backoff)
        reason = f"{self.reason}; backed off: {steps}" if steps else self.reason
        return {
            "module": self.specifier,
            "package": self.package,
            "version": self.requirement,
            "source": self.source,
            "reason": reason,
        }


@dataclass(frozen=True)
class Refusal:
    package: str
    specifier: str
    reason: str

    def hint(self) -> str:
        return (
            f"{self.reason}; cloche installs nothing for it. If you trust it, declare it in a package.json "
            f'beside the script ("dependencies": {{"{self.package}": "<version>"}})'
        )


class Vetting:
    """Vouches for scanned packages and chooses their releases (host side; registry facts cached)."""

    def __init__(
        self,
        facts: RegistryFacts | None,
        popular: Callable[[], frozenset[str]],
        node: Version | None,
        age: MinimumAge = MinimumAge(),
    ) -> None:
        self.facts = facts
        self.popular = popular
        self.node = node
        self.age = age

    def decide(self, usages: Iterable[Usage]) -> tuple[list[Choice], list[Refusal]]:
        wanted = list(usages)
        with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
            answers = list(pool.map(self._one, wanted))
        choices = [a for a in answers if isinstance(a, Choice)]
        refusals = [a for a in answers if isinstance(a, Refusal)]
        return choices, refusals

    def _one(self, usage: Usage) -> Choice | Refusal:
        if usage.package in self.popular():
            return self._popular(usage)
        if self.facts is None:
            return Refusal(usage.package, usage.specifier, f"{usage.package!r} is not on the popularity list")
        try:
            facts = self.facts.packument(usage.package)
        except RegistryUnavailable as e:
            return Refusal(usage.package, usage.specifier, f"the npm registry could not be asked about it ({e})")
        why = self.refusal(facts)
        if why is not None:
            return Refusal(usage.package, usage.specifier, why)
        reason = (
            f"off the popularity list; the registry shows {facts.release_count} releases from "
            f"{day(facts.first_published)} to {day(facts.last_published)}"
        )
        return self._fit(usage, facts, SOURCE_REGISTRY, reason)

    def refusal(self, facts: PackageFacts) -> str | None:
        """Why the registry facts do not vouch for a package off the popularity list; None when they do."""
        name = facts.name
        if not facts.found:
            return f"the npm registry has no package named {name!r}"
        if facts.unpublished:
            return f"{name!r} was unpublished from the npm registry"
        if not facts.releases:
            return f"{name!r} has no stable release (only prereleases)"
        latest = facts.release(facts.latest or "") or facts.releases[0]
        if latest.deprecated:
            return f"{name}@{latest.version} is deprecated: {latest.deprecated.strip()[:200]}"
        if facts.first_published is None:
            return f"the registry gives no publish dates for {name!r}"
        young = self.age.refusal(repr(name), facts.first_published, "packages off the popularity list")
        if young is not None:
            return young
        age = self.age.age_days(facts.first_published)
        span = ((facts.last_published or facts.first_published) - facts.first_published) / DAY
        history = facts.release_count >= MIN_RELEASES and span >= MIN_HISTORY_DAYS
        if not history and age < SINGLE_RELEASE_DAYS:
            return (
                f"{name!r} has too little history to vouch for it ({facts.release_count} release(s) over "
                f"{span:.0f} days; at least {MIN_RELEASES} over {MIN_HISTORY_DAYS:g} days, or one that has stood "
                f"for {SINGLE_RELEASE_DAYS:g} days, are needed)"
            )
        return None

    def _popular(self, usage: Usage) -> Choice:
        reason = "on the popularity list (most downloaded npm packages)"
        if self.facts is None:
            return Choice(usage.package, usage.specifier, "*", SOURCE_POPULAR, reason)
        try:
            latest = self.facts.latest(usage.package)
            if latest is None or not misfits(latest, usage, self.node):
                return Choice(usage.package, usage.specifier, "*", SOURCE_POPULAR, reason)
            facts = self.facts.packument(usage.package)
        except RegistryUnavailable:
            return Choice(usage.package, usage.specifier, "*", SOURCE_POPULAR, f"{reason}; release fit not checked")
        return self._fit(usage, facts, SOURCE_POPULAR, reason)

    def older_fit(self, usage: Usage, failed: str) -> str | None:
        """The newest release older than ``failed`` (which installed but did not load) that fits by the facts."""
        bound = Version.parse(failed)
        if self.facts is None or bound is None:
            return None
        try:
            facts = self.facts.packument(usage.package)
        except RegistryUnavailable:
            return None
        for release in facts.releases[:MAX_BACKOFF]:
            version = Version.parse(release.version)
            if version is None or version >= bound or release.deprecated:
                continue
            if not misfits(release, usage, self.node):
                return release.version
        return None

    def _fit(self, usage: Usage, facts: PackageFacts, source: str, reason: str) -> Choice:
        if not facts.releases:  # prereleases only: npm's choice stands
            return Choice(usage.package, usage.specifier, "*", source, reason)
        newest = facts.release(facts.latest or "") or facts.releases[0]
        candidates = [r for r in facts.releases if Version.parse(r.version) <= Version.parse(newest.version)]  # type: ignore[operator]
        tried: dict[str, list[str]] = {}
        for release in candidates[:MAX_BACKOFF]:
            if release.deprecated and release is not newest:
                continue
            why = misfits(release, usage, self.node)
            if not why:
                requirement = "*" if release is newest else release.version
                return Choice(usage.package, usage.specifier, requirement, source, reason, tuple(describe(tried)))
            tried[release.version] = why
        steps = (*describe(tried), f"no release among the newest {MAX_BACKOFF} fits; installing the newest")
        return Choice(usage.package, usage.specifier, "*", source, reason, steps)
