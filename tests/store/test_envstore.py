"""The environment store on a real filesystem: sealing, the rename race between two builds, pruning."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from cloche.store.envstore import (
    BUILD_ABANDONED_SECONDS,
    META,
    TEMP_PREFIX,
    EnvironmentStore,
    companion_key,
    environment_key,
)

BUILDER_UID = 391_999  # outside the default sandbox pool


@pytest.fixture
def store(tmp_path: Path) -> EnvironmentStore:
    envs = EnvironmentStore(tmp_path / "envs")
    envs.create()
    return envs


def build(store: EnvironmentStore, files: dict[str, str], owner: int = BUILDER_UID) -> Path:
    """A build dir as an install jail leaves it: owned by the builder uid, with write bits and odd modes."""
    path = store.new_build_dir()
    for rel, text in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (path / "bin").mkdir(exist_ok=True)
    tool = path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o6777)  # setuid, setgid and world-writable: all must go
    (path / "link").symlink_to("bin/tool")
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), owner, owner)
    os.chown(path, owner, owner)
    return path


def test_put_seals_every_entry_root_owned_without_write_setuid_or_setgid(store: EnvironmentStore) -> None:
    key = environment_key("python", "lock-a", "cp311")
    found = store.put(key, build(store, {"lib/mod.py": "x = 1\n"}), {"ecosystem": "python"})
    assert found.path == store.path(key) and found.meta["key"] == key and found.meta["ecosystem"] == "python"
    for dirpath, dirnames, filenames in os.walk(found.path):
        for name in [*dirnames, *filenames, ""]:
            st = os.lstat(os.path.join(dirpath, name))
            assert (st.st_uid, st.st_gid) == (0, 0), (dirpath, name)
            if not stat.S_ISLNK(st.st_mode):
                assert stat.S_IMODE(st.st_mode) & 0o7222 == 0, (dirpath, name, oct(st.st_mode))
                assert stat.S_IMODE(st.st_mode) & 0o444 == 0o444
    assert stat.S_IMODE((found.path / "bin" / "tool").stat().st_mode) == 0o555  # still executable
    assert (found.path / "link").is_symlink()
    assert not [p for p in store.root.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_the_loser_of_a_rename_race_keeps_the_winner_and_is_discarded(store: EnvironmentStore) -> None:
    key = environment_key("node", "lock-b", "node20")
    first, second = build(store, {"a.txt": "first\n"}), build(store, {"a.txt": "second\n"})
    won = store.put(key, first, {"n": 1})
    lost = store.put(key, second, {"n": 2})
    assert lost == won and (won.path / "a.txt").read_text() == "first\n"
    assert not second.exists() and store.keys() == [key]


def test_a_rename_that_fails_for_another_reason_is_not_hidden(store: EnvironmentStore, tmp_path: Path) -> None:
    elsewhere = EnvironmentStore(tmp_path / "missing" / "envs")  # its root was never made: the rename fails
    path = build(store, {"a.txt": "x\n"})
    with pytest.raises(OSError):
        elsewhere.put("python-x", path, {})


def test_keys_differ_by_every_input() -> None:
    base = environment_key("python", "lock", "cp311")
    assert (
        len(
            {
                base,
                environment_key("node", "lock", "cp311"),
                environment_key("python", "lock2", "cp311"),
                environment_key("python", "lock", "cp312"),
            }
        )
        == 4
    )
    assert environment_key("python", "lock", "cp311") == base


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_prune_keeps_referenced_entries_their_companions_and_young_ones(store: EnvironmentStore) -> None:
    used, unused, young = (environment_key("python", f"lock-{n}", "cp311") for n in ("used", "unused", "young"))
    for key in (used, companion_key(used), unused, young):
        store.put(key, build(store, {"f": key}), {})
    for key in (used, companion_key(used), unused):
        meta = store.path(key) / META
        meta.chmod(0o644)
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "created": time.time() - 7200}))
        age(store.path(key), 7200)
    assert store.prune([used], grace_seconds=3600) == [unused]
    assert sorted(store.keys()) == sorted([used, companion_key(used), young])


def test_prune_removes_only_abandoned_builds(store: EnvironmentStore) -> None:
    in_flight, abandoned = store.new_build_dir(), store.new_build_dir()
    age(abandoned, BUILD_ABANDONED_SECONDS + 60)
    assert store.prune([], grace_seconds=0) == []
    assert in_flight.exists() and not abandoned.exists()
    store.remove_temp()  # start-up: no build can be in flight
    assert not in_flight.exists()
