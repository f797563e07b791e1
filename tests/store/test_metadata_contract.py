"""The MetadataStore contract, checked on both implementations: SQLite on a real file and PostgreSQL in a
throwaway cluster. A method added to the protocol gets its checks here, so both stores keep up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloche.store.metadata import EnvBinding, MetadataStore, RunRow, SandboxNeed, SandboxRow, SecretRow
from cloche.store.sqlite import SqliteMetadataStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
Opener = Callable[[], MetadataStore]


def sandbox(sid: str, uid: int, tenant: str = "t", ttl: float | None = None, placement: str = "local") -> SandboxRow:
    return SandboxRow(
        sid, tenant, "python", uid, NOW, NOW, ttl, {"timeout_seconds": 5}, {"A": "b"}, placement=placement
    )


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens (and reopens) one store of the parametrised kind; every store opened is closed at the end."""
    opened: list[MetadataStore] = []
    if request.param == "sqlite":

        def open_one() -> MetadataStore:
            opened.append(SqliteMetadataStore(tmp_path / "m.db"))
            return opened[-1]

    else:
        from cloche.store.postgres import PostgresMetadataStore

        url = request.getfixturevalue("pg_url")

        def open_one() -> MetadataStore:
            opened.append(PostgresMetadataStore(url))
            return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> MetadataStore:
    return opener()


def test_sandbox_round_trip_and_tombstone(store: MetadataStore) -> None:
    store.insert_sandbox(sandbox("sb_1", 100))
    store.insert_sandbox(sandbox("sb_2", 101, tenant="other"))
    got = store.get_sandbox("sb_1")
    assert got is not None and got.limits == {"timeout_seconds": 5} and got.env == {"A": "b"}
    assert got.created_at == NOW and got.egress is None and got.secrets == [] and got.placement == "local"
    assert [s.id for s in store.list_sandboxes("t")] == ["sb_1"]
    assert store.used_uids() == {100, 101}
    store.set_language("sb_1", "node")
    store.mark_deleted("sb_1", NOW, "deleted")
    store.mark_deleted("sb_1", NOW + timedelta(seconds=9), "expired")  # a tombstone is written once
    assert store.list_sandboxes("t") == []
    assert store.used_uids() == {101}
    tomb = store.get_sandbox("sb_1")
    assert tomb is not None and (tomb.deleted_reason, tomb.deleted_at, tomb.language) == ("deleted", NOW, "node")
    store.insert_sandbox(sandbox("sb_3", 100))  # a freed uid can be reused
    assert store.live_sandbox_ids() == {"sb_2", "sb_3"}
    assert store.get_sandbox("sb_nope") is None


def test_a_live_uid_is_unique_per_node(store: MetadataStore) -> None:
    store.insert_sandbox(sandbox("sb_1", 100, placement="a1"))
    with pytest.raises(Exception, match=r"(?i)unique"):
        store.insert_sandbox(sandbox("sb_2", 100, placement="a1"))
    store.insert_sandbox(sandbox("sb_3", 100, placement="a2"))  # another node's uid 100 is another user
    assert store.used_uids("a1") == {100} and store.used_uids("a2") == {100}


def test_node_scoped_queries_see_only_that_node(store: MetadataStore) -> None:
    store.insert_sandbox(sandbox("sb_a", 100, ttl=10, placement="a1"))
    store.insert_sandbox(sandbox("sb_b", 101, ttl=10, placement="a2"))
    store.insert_run(RunRow("run_a", "sb_a", ["true"], "running", NOW))
    store.insert_run(RunRow("run_b", "sb_b", ["true"], "running", NOW))
    assert store.live_sandbox_ids("a1") == {"sb_a"} and store.live_sandbox_ids() == {"sb_a", "sb_b"}
    assert [s.id for s in store.expired_sandboxes(NOW + timedelta(seconds=11), "a2")] == ["sb_b"]
    failed = store.fail_unfinished_runs(NOW + timedelta(seconds=2), "a1 restarted", "a1")
    assert [(r.id, r.status, r.error, r.duration_ms) for r in failed] == [("run_a", "failed", "a1 restarted", 2000)]
    other = store.get_run("sb_b", "run_b")
    assert other is not None and other.status == "running"  # another node's run is left alone


def test_expiry(store: MetadataStore) -> None:
    store.insert_sandbox(sandbox("sb_1", 100, ttl=10))
    store.insert_sandbox(sandbox("sb_2", 101))
    store.insert_sandbox(sandbox("sb_3", 102, ttl=1e300))  # a TTL past any calendar never expires
    assert store.expired_sandboxes(NOW + timedelta(seconds=5)) == []
    assert [s.id for s in store.expired_sandboxes(NOW + timedelta(seconds=11))] == ["sb_1"]
    store.touch_sandbox("sb_1", NOW + timedelta(seconds=10))
    assert store.expired_sandboxes(NOW + timedelta(seconds=11)) == []


def test_runs_and_crash_recovery(opener: Opener) -> None:
    store = opener()
    store.insert_sandbox(sandbox("sb_1", 100))
    store.insert_run(RunRow("run_1", "sb_1", ["true"], "running", NOW, extra={"k": [1]}))
    store.save_output("run_1", "so far\n", "", "so far\n")
    done = RunRow("run_2", "sb_1", ["echo"], "running", NOW + timedelta(seconds=1))
    store.insert_run(done)
    done.status, done.stdout, done.exit_code, done.finished_at, done.truncated = "succeeded", "hi\n", 0, NOW, True
    store.finish_run(done)
    store.save_output("run_2", "late", "late", "late")  # a finished run's output is final
    store.close()
    reopened = opener()
    failed = reopened.fail_unfinished_runs(NOW, "crash")
    assert [(r.id, r.status, r.error, r.stdout, r.extra) for r in failed] == [
        ("run_1", "failed", "crash", "so far\n", {"k": [1]})
    ]
    runs = reopened.list_runs("sb_1", 10)
    assert [(r.id, r.status) for r in runs] == [("run_2", "succeeded"), ("run_1", "failed")]
    assert (runs[0].stdout, runs[0].truncated, runs[0].exit_code) == ("hi\n", True, 0)
    assert [r.id for r in reopened.list_runs("sb_1", 1)] == ["run_2"]
    assert reopened.get_run("sb_1", "run_1") is not None
    assert reopened.get_run("sb_other", "run_1") is None


def test_bindings_and_the_keys_live_sandboxes_hold(store: MetadataStore) -> None:
    store.insert_sandbox(sandbox("sb_1", 100))
    store.insert_sandbox(sandbox("sb_2", 101))
    store.set_binding(EnvBinding("sb_1", "python", "fp1", "key1", "lock", [{"name": "six"}], NOW))
    store.set_binding(EnvBinding("sb_1", "python", "fp2", "key2", "lock2", [], NOW))  # replaces
    store.set_binding(EnvBinding("sb_2", "node", "fp", "key3", "", [], NOW))
    got = store.get_binding("sb_1", "python")
    assert got is not None and (got.fingerprint, got.env_key, got.lock, got.updated_at) == ("fp2", "key2", "lock2", NOW)
    assert store.bound_env_keys() == {"key2", "key3"}
    store.mark_deleted("sb_2", NOW, "deleted")
    assert store.bound_env_keys() == {"key2"}
    store.delete_binding("sb_1", "python")
    assert store.get_binding("sb_1", "python") is None and store.bound_env_keys() == set()


def test_needs_per_source_survive_a_reopen(opener: Opener) -> None:
    store = opener()
    store.insert_sandbox(sandbox("sb_1", 100))
    store.set_need(SandboxNeed("sb_1", "python", "entry:main.py", ["PyYAML"], ["rich"], [], NOW))
    store.set_need(SandboxNeed("sb_1", "python", "declared", ["humanize==4.9.0"], [], ["idna<4"], NOW))
    store.set_need(SandboxNeed("sb_1", "node", "declared", ["left-pad@1.3.0"], [], [], NOW))
    store.set_need(SandboxNeed("sb_1", "python", "declared", ["humanize"], [], [], NOW))  # replaces
    store.close()
    store = opener()
    needs = store.get_needs("sb_1", "python")
    assert [(n.source, n.requirements, n.optional, n.constraints) for n in needs] == [
        ("declared", ["humanize"], [], []),
        ("entry:main.py", ["PyYAML"], ["rich"], []),
    ]
    store.delete_need("sb_1", "python", "declared")
    assert [n.source for n in store.get_needs("sb_1", "python")] == ["entry:main.py"]
    assert [n.requirements for n in store.get_needs("sb_1", "node")] == [["left-pad@1.3.0"]]


def test_secrets_are_per_tenant(store: MetadataStore) -> None:
    store.put_secret(SecretRow("a", "TOKEN", b"sealed-a", ["h.example"], NOW))
    store.put_secret(SecretRow("a", "TOKEN", b"sealed-a2", ["h.example"], NOW))  # replaces
    store.put_secret(SecretRow("b", "TOKEN", b"sealed-b", [], NOW))
    got = store.get_secret("a", "TOKEN")
    assert got is not None and (got.sealed, got.hosts) == (b"sealed-a2", ["h.example"])
    assert [s.tenant for s in store.list_secrets("b")] == ["b"]
    assert store.delete_secret("a", "TOKEN") and not store.delete_secret("a", "TOKEN")
    assert store.get_secret("a", "TOKEN") is None and store.get_secret("b", "TOKEN") is not None


def test_sandbox_fields_round_trip_exactly(store: MetadataStore) -> None:
    row = SandboxRow(
        "sb_x",
        "t",
        None,
        7,
        NOW,
        NOW + timedelta(microseconds=123456),
        2.5,
        {},
        {"K": "ünï"},
        egress=["pypi.org:443"],
        secrets=["TOKEN"],
        placement="a1",
    )
    store.insert_sandbox(row)
    assert store.get_sandbox("sb_x") == row
