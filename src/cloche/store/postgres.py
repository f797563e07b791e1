"""PostgreSQL implementation of ``MetadataStore``: one database shared by several API servers and node agents.

Connections come from a small pool (psycopg 3); every method is one autocommit statement, or one transaction
where it needs several, so each stays atomic on its own as the protocol asks. The schema is migrated at
construction (``store/pg_migrations.py``). Timestamps are ``timestamptz`` (returned in UTC), JSON fields are
``jsonb`` and sealed secrets ``bytea``, so the driver gives back each as its record holds it. The statements
and the row mapping are ``store/sql_store.py``'s, written with ``?`` placeholders that ``_pg`` makes ``%s``.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from cloche.errors import StoreUnavailable
from cloche.store import pg_migrations
from cloche.store.metadata import RunRow
from cloche.store.sql_store import ON_NODE, RUNS, Dialect, SqlMetadataStore

Row = dict[str, Any]
POOL_SIZE = 8  # enough for the event loop plus the worker threads that touch the store at once
CONNECT_TIMEOUT_SECONDS = 10.0


def _same(value: Any) -> Any:
    return value


@functools.cache
def _pg(sql: str) -> str:
    """The statement with psycopg's placeholders (no statement holds a literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


class PostgresMetadataStore(SqlMetadataStore):
    dialect = Dialect(dump_json=Jsonb, load_json=_same, dump_time=_same, load_time=_same)

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            open=False,
            name="cloche-metadata",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
            with self._pool.connection() as conn:
                self.applied_migrations = pg_migrations.apply(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:  # down, refused, or no answer in time
            self._pool.close()
            raise StoreUnavailable(f"cannot use the metadata database (CLOCHE_DATABASE_URL): {exc}") from exc
        except BaseException:
            self._pool.close()
            raise

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._pool.connection() as conn:
            return conn.execute(_pg(sql), params).rowcount

    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self._pool.connection() as conn:
            return conn.execute(_pg(sql), params).fetchall()

    def fail_unfinished_runs(self, when: datetime, reason: str, placement: str | None = None) -> list[RunRow]:
        # One statement: the runs it fails are exactly the runs it returns, whatever other servers do meanwhile.
        runs = self._load(
            RUNS,
            "UPDATE runs SET status = 'failed', finished_at = ?, error = ?,"
            " duration_ms = GREATEST(0, (EXTRACT(EPOCH FROM CAST(? AS TIMESTAMPTZ) - started_at) * 1000)::bigint)"
            " WHERE status = 'running' AND sandbox_id IN (SELECT id FROM sandboxes WHERE true" + ON_NODE + ")"
            " RETURNING *",
            (when, reason, when, placement, placement),
        )
        return sorted(runs, key=lambda r: (r.started_at, r.id))

    def close(self) -> None:
        self._pool.close()
