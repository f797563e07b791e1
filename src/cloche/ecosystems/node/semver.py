"""npm's version ranges, as far as choosing a release needs them: does a version satisfy ``engines.node``?

Implements node-semver's grammar for ranges: ``||`` alternatives of space-separated comparators
(``>=``, ``<=``, ``>``, ``<``, ``=``), caret (``^1.2``), tilde (``~1.2.3``), x-ranges (``1.x``, ``*``,
``""``) and hyphen ranges (``1.2 - 2``). Prerelease versions only satisfy a comparator of the same
``major.minor.patch`` with a prerelease, as in npm. A range that does not parse satisfies nothing.

Written here because the Python library for npm ranges (semantic_version's ``NpmSpec``) refuses the spaced
operators real ``engines`` fields use (``">= 6.9.0"``, which node-semver accepts), and a refused range would
turn a fitting release into a misfit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\s*$")
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR = re.compile(r"^(<=|>=|<|>|=|\^|~>?)?\s*(\S+)$")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version | None:
        m = _VERSION.match(text)
        if m is None:
            return None
        pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release sorts after its prereleases; numeric identifiers sort before alphanumeric ones.
        pre = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return core + ("-" + ".".join(str(p) for p in self.pre) if self.pre else "")


Comparator = tuple[str, Version]  # (operator, version), operator one of < <= > >= =


def _partial(text: str) -> tuple[list[int | None], tuple[int | str, ...]] | None:
    m = _PARTIAL.match(text)
    if m is None:
        return None
    parts: list[int | None] = [None if p is None or p in "xX*" else int(p) for p in m.group(1, 2, 3)]
    # "1.x.3" means "1.x": nothing after a wildcard counts.
    for i, p in enumerate(parts):
        if p is None:
            parts[i:] = [None] * (3 - i)
            break
    pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
    return parts, pre


def _expand(op: str, text: str) -> list[Comparator] | None:
    """The plain comparators one range token stands for ([] = any version)."""
    found = _partial(text)
    if found is None:
        return None
    (major, minor, patch), pre = found
    low = Version(major or 0, minor or 0, patch or 0, pre)
    if major is None:
        return [] if op in ("", "=", ">=", "<=", "^", "~", "~>") else [("<", Version(0, 0, 0))]
    if op in ("^",):
        if major > 0 or minor is None:
            high = Version(major + 1, 0, 0, (0,))
        elif minor > 0 or patch is None:
            high = Version(0, minor + 1, 0, (0,))
        else:
            high = Version(0, 0, (patch or 0) + 1, (0,))
        return [(">=", low), ("<", high)]
    if op in ("~", "~>"):
        high = Version(major + 1, 0, 0, (0,)) if minor is None else Version(major, minor + 1, 0, (0,))
        return [(">=", low), ("<", high)]
    if minor is None or patch is None:  # an x-range under a plain operator
        next_up = Version(major + 1, 0, 0, (0,)) if minor is None else Version(major, minor + 1, 0, (0,))
        return {
            "": [(">=", low), ("<", next_up)],
            "=": [(">=", low), ("<", next_up)],
            ">": [(">=", next_up)],
            ">=": [(">=", low)],
            "<": [("<", Version(low.major, low.minor, 0, (0,)))],
            "<=": [("<", next_up)],
        }[op]
    return [(op or "=", low)]


def _hyphen(left: str, right: str) -> list[Comparator] | None:
    low, high = _partial(left), _partial(right)
    if low is None or high is None:
        return None
    start = Version(low[0][0] or 0, low[0][1] or 0, low[0][2] or 0, low[1])
    (major, minor, patch), pre = high
    if major is None:
        return [(">=", start)]
    if minor is None:
        return [(">=", start), ("<", Version(major + 1, 0, 0, (0,)))]
    if patch is None:
        return [(">=", start), ("<", Version(major, minor + 1, 0, (0,)))]
    return [(">=", start), ("<=", Version(major, minor, patch, pre))]


def parse_range(text: str) -> list[list[Comparator]] | None:
    """The alternatives of ``text``, each a list of comparators that must all hold; None when unparsable."""
    alternatives: list[list[Comparator]] = []
    for alternative in text.split("||"):
        alternative = alternative.strip()
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alternative)
        if hyphen:
            found = _hyphen(hyphen.group(1), hyphen.group(2))
            if found is None:
                return None
            alternatives.append(found)
            continue
        # ">= 1.2" is ">=1.2": glue operators to their version before splitting on spaces.
        tokens = re.sub(r"(<=|>=|<|>|=|\^|~>?)\s+", r"\1", alternative).split()
        comparators: list[Comparator] = []
        for token in tokens or ["*"]:
            m = _COMPARATOR.match(token)
            expanded = _expand(m.group(1) or "", m.group(2)) if m else None
            if expanded is None:
                return None
            comparators += expanded
        alternatives.append(comparators)
    return alternatives


def _holds(version: Version, op: str, bound: Version) -> bool:
    return {
        "<": version < bound,
        "<=": version <= bound,
        ">": version > bound,
        ">=": version >= bound,
        "=": version == bound,
    }[op]


def satisfies(version: str | Version, range_text: str) -> bool:
    """True when ``version`` is in npm range ``range_text``."""
    v = version if isinstance(version, Version) else Version.parse(version)
    alternatives = parse_range(range_text)
    if v is None or alternatives is None:
        return False
    for comparators in alternatives:
        if not all(_holds(v, op, bound) for op, bound in comparators):
            continue
        # A prerelease matches only when a comparator names a prerelease of the same release.
        if v.pre and not any(
            b.pre and (b.major, b.minor, b.patch) == (v.major, v.minor, v.patch) for _, b in comparators
        ):
            continue
        return True
    return False
