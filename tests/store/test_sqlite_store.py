"""The SQLite metadata store on a real file: round trips, tombstones, uid reuse, crash recovery."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloche.store.metadata import RunRow, SandboxNeed, SandboxRow, SecretRow
from cloche.store.sqlite import SCHEMA, SqliteMetadataStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sandbox(sid: str, uid: int, tenant: str = "t", ttl: float | None = None) -> SandboxRow:
    return SandboxRow(sid, tenant, "python", uid, NOW, NOW, ttl, {"timeout_seconds": 5}, {"A": "b"})


@pytest.fixture
def store(tmp_path: Path) -> SqliteMetadataStore:
    return SqliteMetadataStore(tmp_path / "m.db")


def test_sandbox_round_trip_and_tombstone(store: SqliteMetadataStore) -> None:
    store.insert_sandbox(sandbox("sb_1", 100))
    store.insert_sandbox(sandbox("sb_2", 101, tenant="other"))
    got = store.get_sandbox("sb_1")
    assert got is not None and got.limits == {"timeout_seconds": 5} and got.env == {"A": "b"}
    assert [s.id for s in store.list_sandboxes("t")] == ["sb_1"]
    assert store.used_uids() == {100, 101}
    store.mark_deleted("sb_1", NOW, "deleted")
    assert store.list_sandboxes("t") == []
    assert store.used_uids() == {101}
    tomb = store.get_sandbox("sb_1")
    assert tomb is not None and tomb.deleted_reason == "deleted"
    store.insert_sandbox(sandbox("sb_3", 100))  # a freed uid can be reused


def test_live_uid_is_unique(store: SqliteMetadataStore) -> None:
    import sqlite3

    store.insert_sandbox(sandbox("sb_1", 100))
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_sandbox(sandbox("sb_2", 100))


def test_expiry(store: SqliteMetadataStore) -> None:
    store.insert_sandbox(sandbox("sb_1", 100, ttl=10))
    store.insert_sandbox(sandbox("sb_2", 101))
    assert store.expired_sandboxes(NOW + timedelta(seconds=5)) == []
    assert [s.id for s in store.expired_sandboxes(NOW + timedelta(seconds=11))] == ["sb_1"]
    store.touch_sandbox("sb_1", NOW + timedelta(seconds=10))
    assert store.expired_sandboxes(NOW + timedelta(seconds=11)) == []


def test_runs_and_crash_recovery(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.db")
    store.insert_sandbox(sandbox("sb_1", 100))
    store.insert_run(RunRow("run_1", "sb_1", ["true"], "running", NOW))
    done = RunRow("run_2", "sb_1", ["echo"], "running", NOW + timedelta(seconds=1))
    store.insert_run(done)
    done.status, done.stdout, done.exit_code, done.finished_at = "succeeded", "hi\n", 0, NOW
    store.finish_run(done)
    store.close()
    reopened = SqliteMetadataStore(tmp_path / "m.db")
    assert [(r.id, r.status, r.error) for r in reopened.fail_unfinished_runs(NOW, "crash")] == [
        ("run_1", "failed", "crash")
    ]
    runs = reopened.list_runs("sb_1", 10)
    assert [(r.id, r.status) for r in runs] == [("run_2", "succeeded"), ("run_1", "failed")]
    assert reopened.get_run("sb_1", "run_1") is not None
    assert reopened.get_run("sb_other", "run_1") is None


def test_needs_per_source_survive_a_reopen(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.db")
    store.insert_sandbox(sandbox("sb_1", 100))
    store.set_need(SandboxNeed("sb_1", "python", "entry:main.py", ["PyYAML"], ["rich"], [], NOW))
    store.set_need(SandboxNeed("sb_1", "python", "declared", ["humanize==4.9.0"], [], ["idna<4"], NOW))
    store.set_need(SandboxNeed("sb_1", "node", "declared", ["left-pad@1.3.0"], [], [], NOW))
    store.set_need(SandboxNeed("sb_1", "python", "declared", ["humanize"], [], [], NOW))  # replaces
    store.close()
    store = SqliteMetadataStore(tmp_path / "m.db")
    needs = store.get_needs("sb_1", "python")
    assert [(n.source, n.requirements, n.optional) for n in needs] == [
        ("declared", ["humanize"], []),
        ("entry:main.py", ["PyYAML"], ["rich"]),
    ]
    store.delete_need("sb_1", "python", "declared")
    assert [n.source for n in store.get_needs("sb_1", "python")] == ["entry:main.py"]
    assert [n.requirements for n in store.get_needs("sb_1", "node")] == [["left-pad@1.3.0"]]


def test_a_database_from_before_secrets_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(",\n    secrets TEXT NOT NULL DEFAULT '[]'", ""))
    old.execute(
        "INSERT INTO sandboxes (id, tenant, host_uid, created_at, last_used_at, limits, env)"
        " VALUES ('sb_old', 't', 7, ?, ?, '{}', '{}')",
        (NOW.isoformat(), NOW.isoformat()),
    )
    old.commit()
    old.close()
    store = SqliteMetadataStore(path)
    row = store.get_sandbox("sb_old")
    assert row is not None and row.secrets == []
    store.insert_sandbox(SandboxRow("sb_new", "t", None, 8, NOW, NOW, None, {}, {}, secrets=["TOKEN"]))
    again = store.get_sandbox("sb_new")
    assert again is not None and again.secrets == ["TOKEN"]


def test_secrets_are_per_tenant(store: SqliteMetadataStore) -> None:
    store.put_secret(SecretRow("a", "TOKEN", b"sealed-a", ["h.example"], NOW))
    store.put_secret(SecretRow("b", "TOKEN", b"sealed-b", [], NOW))
    got = store.get_secret("a", "TOKEN")
    assert got is not None and (got.sealed, got.hosts) == (b"sealed-a", ["h.example"])
    assert [s.tenant for s in store.list_secrets("b")] == ["b"]
    assert store.delete_secret("a", "TOKEN") and not store.delete_secret("a", "TOKEN")
    assert store.get_secret("a", "TOKEN") is None and store.get_secret("b", "TOKEN") is not None
