"""What a resolver layer answers: a project vouched for, with its source and a reason a user can read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Source = Literal["override", "namespace", "map", "ranked name", "long tail"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """``module`` is the key that matched (a dotted prefix of the import, or all of it), ``distribution`` the
    project to install, ``source`` the layer that vouched and ``reason`` why, in words."""

    module: str
    distribution: str
    source: Source
    reason: str

    def to_dict(self) -> dict[str, str | None]:
        """The install report's ``resolved`` entry (the newest release that fits is asked for: ``*``)."""
        return {
            "module": self.module,
            "package": self.distribution,
            "version": "*",
            "source": self.source,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """Nothing vouches for ``module``; ``reason`` says what was checked, for the unresolved import's hint."""

    module: str
    reason: str


class OfflineLayer(Protocol):
    """A layer over shipped data: asked once per dotted prefix of an import, longest first."""

    def at(self, prefix: str) -> Resolution | None: ...
