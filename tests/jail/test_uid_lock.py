"""Servers on one host never share host uids: the uid-range lock, unit and with two real servers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cloche.errors import JailUnavailable
from cloche.jail.uid_lock import UidRangeLock, blocks
from conftest import UIDS_TAKEN, running_server


def test_blocks_cover_the_pool_and_the_builder() -> None:
    assert blocks(200_000, 60_000, 199_999) == [199, *range(200, 260)]
    assert blocks(400_000, 999, 400_999) == [400]
    assert blocks(400_500, 1000, 1000) == [1, 400, 401]


def test_an_overlapping_range_is_refused_until_the_holder_releases(tmp_path: Path) -> None:
    first = UidRangeLock.acquire(tmp_path, 500_000, 2000, 499_999, "first")
    with pytest.raises(JailUnavailable, match=r"501000-501999 are in use by another cloche server \(first\)"):
        UidRangeLock.acquire(tmp_path, 501_500, 10, 600_000, "second")
    with pytest.raises(JailUnavailable, match=UIDS_TAKEN):
        UidRangeLock.acquire(tmp_path, 700_000, 10, 499_999, "same builder uid")
    apart = UidRangeLock.acquire(tmp_path, 700_000, 10, 700_999, "apart")  # no shared block
    first.release()
    second = UidRangeLock.acquire(tmp_path, 501_500, 10, 600_000, "second")
    second.release()
    apart.release()


def test_a_second_real_server_on_the_same_uids_refuses_to_start() -> None:
    with running_server() as first:
        base = first.env["CLOCHE_UID_BASE"]
        overlapping = {"CLOCHE_UID_BASE": str(int(base) + 100), "CLOCHE_UID_COUNT": "10", "CLOCHE_BUILDER_UID": "1500"}
        with running_server(overlapping, start=False) as second:
            with pytest.raises(RuntimeError, match=UIDS_TAKEN):
                second.start(timeout=60)
            assert "CLOCHE_UID_BASE" in second.log.read_text()  # the message says how to fix it
        assert httpx.get(f"{first.url}/health", timeout=10).status_code == 200  # the first one is untouched
