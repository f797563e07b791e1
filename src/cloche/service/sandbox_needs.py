"""What a sandbox's environment must cover for one ecosystem: the union of its sources' needs.

Sources are the entry points that ran (``entry:<path>``, replaced each time the entry's detection changes) and
the packages typed in ``pip install``/``npm install`` (``declared``). Needs only grow until a source changes them
(an edited manifest, an import removed, ``pip uninstall``). Pure: the caller reads and writes the store, and
records a plan's ``writes`` only once its environment is in place, so a failed install changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cloche.ecosystems.base import Detection, Ecosystem, Needs
from cloche.store.metadata import SandboxNeed

DECLARED = "declared"


def entry_source(entry: str) -> str:
    return f"entry:{entry}"


@dataclass(frozen=True)
class NeedsPlan:
    detection: Detection | None  # what the environment must cover now; None: nothing
    alone: Detection | None = None  # the one entry's own needs, for when the union cannot be resolved
    writes: Mapping[str, Needs] = field(default_factory=dict)  # sources to record (empty Needs: forget it)


def plan(
    ecosystem: Ecosystem, stored: Sequence[SandboxNeed], entries: Mapping[str, Detection], declared: Needs | None
) -> NeedsPlan:
    """``entries``: what this exec's entry points of ``ecosystem`` need; ``declared``: the typed packages after
    this exec's installs (None: unchanged)."""
    accumulates = ecosystem.accumulates
    if accumulates is None:  # the environment is the last entry's
        return NeedsPlan(list(entries.values())[-1] if entries else None)
    sources = {n.source: Needs(tuple(n.requirements), tuple(n.optional), tuple(n.constraints)) for n in stored}
    writes: dict[str, Needs] = {}
    for entry, detection in entries.items():
        mine = accumulates.needs(detection)
        if sources.get(entry_source(entry), Needs()) != mine:
            writes[entry_source(entry)] = mine
        sources[entry_source(entry)] = mine
    if declared is not None:
        writes[DECLARED] = declared
        sources[DECLARED] = declared
    if len(entries) == 1:
        ((entry, detection),) = entries.items()
        extra = _union(needs for source, needs in sorted(sources.items()) if source != entry_source(entry))
        if not extra:
            return NeedsPlan(detection, None, writes)  # its own detection: a lock it carries is kept
        return NeedsPlan(accumulates.combine(detection, extra), detection, writes)
    total = _union(needs for _, needs in sorted(sources.items()))
    return NeedsPlan(accumulates.combine(None, total) if total else None, None, writes)


def _union(parts: Iterable[Needs]) -> Needs:
    total = Needs()
    for needs in parts:
        total = total.union(needs)
    return total


def records(sandbox_id: str, ecosystem: str, writes: Mapping[str, Needs], now: datetime) -> list[SandboxNeed]:
    return [
        SandboxNeed(sandbox_id, ecosystem, source, list(n.requirements), list(n.optional), list(n.constraints), now)
        for source, n in writes.items()
    ]
