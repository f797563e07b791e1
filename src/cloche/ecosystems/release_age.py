"""The age rule for a package only its registry can vouch for (npm's off the popularity list, PyPI's long tail):
its first release must be at least ``days`` old, because freshly registered names are how slopsquatting works.
Host side and pure: the registry's dates come in, the clock is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DAY = 86_400.0


def day(epoch: float | None) -> str:
    """An epoch time as the date a user reads in a reason (UTC)."""
    return time.strftime("%Y-%m-%d", time.gmtime(epoch)) if epoch is not None else "an unknown date"


@dataclass(frozen=True)
class MinimumAge:
    days: float = 90.0
    clock: Callable[[], float] = time.time

    def age_days(self, first_release: float) -> float:
        return (self.clock() - first_release) / DAY

    def refusal(self, shown_name: str, first_release: float, applies_to: str) -> str | None:
        """Why a package first released at ``first_release`` is too young to install; None when it is old
        enough. ``applies_to`` names the packages the rule is for ("projects outside the ranking")."""
        age = self.age_days(first_release)
        if age >= self.days:
            return None
        return (
            f"{shown_name} was first released {age:.0f} days ago ({day(first_release)}); {applies_to} are "
            f"installed only after {self.days:g} days"
        )
