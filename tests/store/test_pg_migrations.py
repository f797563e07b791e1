"""PostgreSQL schema migrations: applied once, idempotent, safe when several servers start at once."""

from __future__ import annotations

import threading

import psycopg
import pytest

from cloche.errors import StoreUnavailable
from cloche.store import pg_migrations
from cloche.store.postgres import PostgresMetadataStore


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_migrations_apply_once_and_a_restart_applies_nothing(pg_url: str) -> None:
    first = PostgresMetadataStore(pg_url)
    first.close()
    again = PostgresMetadataStore(pg_url)
    again.close()
    assert first.applied_migrations == [v for v, _ in pg_migrations.MIGRATIONS]
    assert again.applied_migrations == []
    assert versions(pg_url) == [v for v, _ in pg_migrations.MIGRATIONS]


def test_servers_starting_together_migrate_once(pg_url: str) -> None:
    stores: list[PostgresMetadataStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        try:
            stores.append(PostgresMetadataStore(pg_url))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert errors == []
    applied = sorted(v for s in stores for v in s.applied_migrations)
    assert applied == [v for v, _ in pg_migrations.MIGRATIONS]  # each exactly once, whoever got there first


def test_a_database_migrated_by_a_newer_cloche_is_refused(pg_url: str) -> None:
    PostgresMetadataStore(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (pg_migrations.LATEST + 1,))
    with pytest.raises(StoreUnavailable, match="newer than this cloche knows"):
        PostgresMetadataStore(pg_url)


def test_an_unreachable_database_says_so(pg_cluster: object, tmp_path: object) -> None:
    with pytest.raises(StoreUnavailable, match="CLOCHE_DATABASE_URL"):
        PostgresMetadataStore(f"postgresql://cloche@/none?host={tmp_path}&port=1&connect_timeout=2")
