"""What building a lock concluded, kept on disk (``facts/builds/``) by the lock the build started from.

A verdict holds for one lock checked against one detection's imports (another script resolving to the same first
lock may need no repair, or another one). Three kinds, all in the same store, beside which detections a stored
environment is known to serve (checked once, when the store holds a lock's environment built for other imports):

- **repaired**: verifying changed the lock; the repaired lock is found again (also after a restart) without
  rebuilding and repairing the first one, for good.
- **unrepairable**: no repair made every import load; the unverified environment (never bound) is reused for the
  resolution TTL, after which a registry that has since gained a fixed release is tried again.
- **failed**: the build itself failed (``InstallFailed``: a package that does not build, an install script that
  needs the outside world); the same failure is answered at once, marked as remembered, for the failed-build TTL.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloche.ecosystems import base
from cloche.ecosystems.base import Component, Detection, InstallFailed, Lock, Verification
from cloche.ecosystems.facts_cache import FactsCache

FAILED = "failed"


@dataclass(frozen=True)
class Built:
    """A build's outcome: the lock the environment holds (recovery may have changed it), its store key, and
    the verification (None: the ecosystem does not verify)."""

    lock: Lock
    key: str
    verification: Verification | None


def _key(started_from: str, detection: Detection) -> str:
    return f"{started_from} {detection.fingerprint}"


def _record(built: Built) -> dict[str, Any]:
    verification = built.verification
    assert verification is not None
    return {
        "lock": built.lock.text,
        "components": [c.to_dict() for c in built.lock.components],
        "key": built.key,
        "checked": verification.checked,
        "failures": [dataclasses.asdict(f) for f in verification.failures],
        "steps": [dataclasses.asdict(s) for s in verification.steps],
    }


def _built(data: Mapping[str, Any]) -> Built:
    lock = Lock(str(data["lock"]), tuple(Component.from_dict(c) for c in data["components"]))
    failures = tuple(base.ImportFailure(f["module"], f["error"], tuple(f["names"])) for f in data["failures"])
    steps = tuple(base.RecoveryStep(**s) for s in data["steps"])
    return Built(lock, str(data["key"]), Verification(lock, int(data["checked"]), failures, steps))


class BuildVerdicts:
    def __init__(self, cache: FactsCache | None, unrepaired_ttl: float, failed_ttl: float) -> None:
        self.cache = cache or FactsCache(None, "builds")
        self.unrepaired_ttl = unrepaired_ttl
        self.failed_ttl = failed_ttl

    def record(self, started_from: str, detection: Detection, built: Built) -> None:
        """Keep a verified build's outcome when verifying changed its lock or could not repair it."""
        self.cache.put(_key(started_from, detection), _record(built))

    def earlier(self, started_from: str, detection: Detection) -> Built | None:
        """What an earlier build of the same lock for the same needs ended with: a repaired lock (for good) or
        an unrepairable one (for the unrepaired TTL). The caller checks its environment is still stored."""
        stored = self.cache.get(_key(started_from, detection))
        if stored is None or not isinstance(stored.data, dict) or FAILED in stored.data:
            return None
        try:
            built = _built(stored.data)
        except (KeyError, TypeError, ValueError):  # an older shape of the record: build again
            return None
        assert built.verification is not None
        if not built.verification.ok and not stored.fresh(self.unrepaired_ttl):
            return None
        return built

    def checked(self, key: str, check_key: str) -> bool:
        """Whether the stored environment ``key`` is known to import what a detection requires (``check_key``:
        the ecosystem's digest of those imports)."""
        return self.cache.get(f"checked {key} {check_key}") is not None

    def mark_checked(self, key: str, check_key: str) -> None:
        self.cache.put(f"checked {key} {check_key}", True)

    def remember_failure(self, started_from: str, detection: Detection, failure: InstallFailed) -> bool:
        """Keep a failed build's message (unless failed builds are not remembered); True when kept."""
        if self.failed_ttl <= 0:
            return False
        self.cache.put(_key(started_from, detection), {FAILED: failure.message})
        return True

    def raise_recent_failure(self, started_from: str, detection: Detection) -> None:
        """Raise the remembered failure of this lock's build while it is recent; else nothing."""
        stored = self.cache.get(_key(started_from, detection))
        if stored is None or not isinstance(stored.data, dict) or FAILED not in stored.data:
            return
        if not stored.fresh(self.failed_ttl):
            return
        ago = max(0, int(time.time() - stored.fetched))
        retry = max(1, int(self.failed_ttl - ago))
        raise InstallFailed(
            f"{stored.data[FAILED]}\n(The same packages failed to build {ago} s ago; this is that failure, "
            f"remembered. They are built again in {retry} s (CLOCHE_FAILED_BUILD_TTL_SECONDS), or at once when "
            "the needs change.)"
        )
