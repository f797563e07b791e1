"""The registry-facts cache both ecosystems ask through: fresh answers, expiry, stale-over-nothing, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.ecosystems.facts_cache import FactsCache, iso_epoch


class Away(Exception):
    pass


def ask(cache: FactsCache, answer: int | Exception, ttl: float = 60.0) -> int:
    def read() -> int:
        if isinstance(answer, Exception):
            raise answer
        return answer

    return cache.through("k", read, ttl=lambda _: ttl, load=int, dump=lambda v: v, unavailable=Away)


def test_fresh_answers_come_from_the_cache_and_expired_ones_are_read_again(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "facts" / "x", "https://registry.example")
    assert ask(cache, 1) == 1
    assert ask(cache, 2) == 1  # still fresh
    assert ask(cache, 3, ttl=0) == 3  # expired: read and stored again
    assert (tmp_path / "facts").stat().st_mode & 0o777 == 0o700


def test_a_stale_answer_beats_none_while_the_registry_is_away(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "facts" / "x", "r")
    ask(cache, 5)
    assert ask(cache, Away("down"), ttl=0) == 5
    with pytest.raises(Away):
        ask(FactsCache(tmp_path / "other" / "x", "r"), Away("down"))


def test_a_record_of_another_shape_counts_as_absent(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "facts" / "x", "r")
    cache.put("k", {"not": "an int"})
    assert ask(cache, 7) == 7
    cache.put("k", "x")
    with pytest.raises(Away):  # nothing usable stored: the outage is reported
        ask(cache, Away("down"), ttl=0)


def test_iso_times_as_registries_write_them() -> None:
    assert iso_epoch("1970-01-01T00:00:10Z") == 10.0
    assert iso_epoch("not a time") is None and iso_epoch(None) is None
