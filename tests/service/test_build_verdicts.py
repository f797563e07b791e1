"""Build verdicts on disk: a failed build is answered with its own message while recent, never taken for a
repaired or unrepairable verdict, and not kept when the setting is 0 (through a server: test_node_deps.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloche.ecosystems.base import Detection, InstallFailed
from cloche.ecosystems.facts_cache import FactsCache
from cloche.service.build_verdicts import BuildVerdicts

DETECTION = Detection("node", "scan", ("downloads-binary",), "fingerprint-1")
OTHER = Detection("node", "scan", ("downloads-binary", "left-pad"), "fingerprint-2")


def test_a_recent_failure_is_raised_again_with_its_message_and_when_it_is_retried(tmp_path: Path) -> None:
    verdicts = BuildVerdicts(FactsCache(tmp_path, "builds"), unrepaired_ttl=3600, failed_ttl=600)
    verdicts.raise_recent_failure("node-abc", DETECTION)  # nothing known: no error
    assert verdicts.remember_failure("node-abc", DETECTION, InstallFailed("x's install script tried to download"))
    with pytest.raises(InstallFailed) as raised:
        verdicts.raise_recent_failure("node-abc", DETECTION)
    assert raised.value.message.startswith("x's install script tried to download\n(The same packages failed")
    assert "built again in 600 s" in raised.value.message or "built again in 599 s" in raised.value.message
    verdicts.raise_recent_failure("node-abc", OTHER)  # other needs: another verdict
    verdicts.raise_recent_failure("node-def", DETECTION)  # another lock: another verdict
    assert verdicts.earlier("node-abc", DETECTION) is None  # a failure is no environment to reuse


def test_an_old_failure_is_built_again_and_ttl_zero_keeps_none(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path, "builds")
    verdicts = BuildVerdicts(cache, unrepaired_ttl=3600, failed_ttl=600)
    verdicts.remember_failure("node-abc", DETECTION, InstallFailed("broken"))
    [path] = tmp_path.glob("*.json")
    stored = cache.get(f"node-abc {DETECTION.fingerprint}")
    assert stored is not None
    cache.put(f"node-abc {DETECTION.fingerprint}", stored.data, fetched=time.time() - 601)
    verdicts.raise_recent_failure("node-abc", DETECTION)  # older than the TTL: build again
    path.unlink()
    off = BuildVerdicts(cache, unrepaired_ttl=3600, failed_ttl=0)
    assert not off.remember_failure("node-abc", DETECTION, InstallFailed("broken"))
    assert list(tmp_path.glob("*.json")) == []
    off.raise_recent_failure("node-abc", DETECTION)
