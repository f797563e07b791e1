"""PostgreSQL implementation of ``MetadataStore``: one database shared by several API servers and node agents.

Connections come from a small pool (psycopg 3); every method is one autocommit statement, or one transaction
where it needs several, so each stays atomic on its own as the protocol asks. The schema is migrated at
construction (``store/pg_migrations.py``). Timestamps are ``timestamptz`` (returned in UTC), JSON fields are
``jsonb``, sealed secrets ``bytea``; each table's columns are named as its row dataclass's fields, so a row
becomes a record with ``Record(**row)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from cloche.errors import StoreUnavailable
from cloche.store import pg_migrations
from cloche.store.metadata import EnvBinding, RunRow, SandboxNeed, SandboxRow, SecretRow

Row = dict[str, Any]
POOL_SIZE = 8  # enough for the event loop plus the worker threads that touch the store at once
CONNECT_TIMEOUT_SECONDS = 10.0
ON_NODE = " AND (%(placement)s::text IS NULL OR placement = %(placement)s::text)"


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


class PostgresMetadataStore:
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

    def _exec(self, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> int:
        with self._pool.connection() as conn:
            return conn.execute(sql, params).rowcount

    def _fetch(self, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> list[Row]:
        with self._pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    # sandboxes

    def insert_sandbox(self, row: SandboxRow) -> None:
        self._exec(
            "INSERT INTO sandboxes (id, tenant, language, host_uid, created_at, last_used_at, ttl_seconds, limits,"
            " env, egress, secrets, placement, isolation) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (
                row.id,
                row.tenant,
                row.language,
                row.host_uid,
                row.created_at,
                row.last_used_at,
                row.ttl_seconds,
                Jsonb(row.limits),
                Jsonb(row.env),
                None if row.egress is None else Jsonb(row.egress),
                Jsonb(row.secrets),
                row.placement,
                row.isolation,
            ),
        )

    def get_sandbox(self, sandbox_id: str) -> SandboxRow | None:
        rows = self._fetch("SELECT * FROM sandboxes WHERE id = %s", (sandbox_id,))
        return SandboxRow(**rows[0]) if rows else None

    def list_sandboxes(self, tenant: str) -> list[SandboxRow]:
        rows = self._fetch(
            "SELECT * FROM sandboxes WHERE tenant = %s AND deleted_at IS NULL ORDER BY created_at, id", (tenant,)
        )
        return [SandboxRow(**r) for r in rows]

    def touch_sandbox(self, sandbox_id: str, when: datetime) -> None:
        self._exec("UPDATE sandboxes SET last_used_at = %s WHERE id = %s", (when, sandbox_id))

    def set_language(self, sandbox_id: str, language: str) -> None:
        self._exec("UPDATE sandboxes SET language = %s WHERE id = %s", (language, sandbox_id))

    def mark_deleted(self, sandbox_id: str, when: datetime, reason: str) -> None:
        self._exec(
            "UPDATE sandboxes SET deleted_at = %s, deleted_reason = %s WHERE id = %s AND deleted_at IS NULL",
            (when, reason, sandbox_id),
        )

    def live_sandbox_ids(self, placement: str | None = None) -> set[str]:
        rows = self._fetch("SELECT id FROM sandboxes WHERE deleted_at IS NULL" + ON_NODE, {"placement": placement})
        return {r["id"] for r in rows}

    def used_uids(self, placement: str | None = None) -> set[int]:
        sql = "SELECT host_uid FROM sandboxes WHERE deleted_at IS NULL" + ON_NODE
        return {r["host_uid"] for r in self._fetch(sql, {"placement": placement})}

    def expired_sandboxes(self, now: datetime, placement: str | None = None) -> list[SandboxRow]:
        sql = "SELECT * FROM sandboxes WHERE deleted_at IS NULL AND ttl_seconds IS NOT NULL" + ON_NODE
        live = [SandboxRow(**r) for r in self._fetch(sql, {"placement": placement})]
        # Compared here, not in SQL: a huge TTL overflows an interval, and SQLite decides the same way.
        return [s for s in live if s.ttl_seconds and (now - s.last_used_at).total_seconds() > s.ttl_seconds]

    # runs

    def insert_run(self, row: RunRow) -> None:
        self._exec(
            "INSERT INTO runs (id, sandbox_id, argv, status, started_at, extra) VALUES (%s,%s,%s,%s,%s,%s)",
            (row.id, row.sandbox_id, Jsonb(row.argv), row.status, row.started_at, Jsonb(row.extra)),
        )

    def finish_run(self, row: RunRow) -> None:
        self._exec(
            "UPDATE runs SET status=%s, exit_code=%s, stdout=%s, stderr=%s, output=%s, truncated=%s,"
            " duration_ms=%s, finished_at=%s, error=%s, extra=%s, argv=%s WHERE id=%s",
            (
                row.status,
                row.exit_code,
                row.stdout,
                row.stderr,
                row.output,
                row.truncated,
                row.duration_ms,
                row.finished_at,
                row.error,
                Jsonb(row.extra),
                Jsonb(row.argv),
                row.id,
            ),
        )

    def save_output(self, run_id: str, stdout: str, stderr: str, output: str) -> None:
        self._exec(
            "UPDATE runs SET stdout=%s, stderr=%s, output=%s WHERE id=%s AND status='running'",
            (stdout, stderr, output, run_id),
        )

    def get_run(self, sandbox_id: str, run_id: str) -> RunRow | None:
        rows = self._fetch("SELECT * FROM runs WHERE id = %s AND sandbox_id = %s", (run_id, sandbox_id))
        return RunRow(**rows[0]) if rows else None

    def list_runs(self, sandbox_id: str, limit: int) -> list[RunRow]:
        rows = self._fetch(
            "SELECT * FROM runs WHERE sandbox_id = %s ORDER BY started_at DESC, id DESC LIMIT %s", (sandbox_id, limit)
        )
        return [RunRow(**r) for r in rows]

    def fail_unfinished_runs(self, when: datetime, reason: str, placement: str | None = None) -> list[RunRow]:
        # One statement: the runs it fails are exactly the runs it returns, whatever other servers do meanwhile.
        rows = self._fetch(
            "UPDATE runs SET status = 'failed', finished_at = %(when)s, error = %(reason)s,"
            " duration_ms = GREATEST(0, (EXTRACT(EPOCH FROM %(when)s - started_at) * 1000)::bigint)"
            " WHERE status = 'running' AND sandbox_id IN (SELECT id FROM sandboxes WHERE true" + ON_NODE + ")"
            " RETURNING *",
            {"when": when, "reason": reason, "placement": placement},
        )
        return sorted((RunRow(**r) for r in rows), key=lambda r: (r.started_at, r.id))

    # environment bindings

    def get_binding(self, sandbox_id: str, ecosystem: str) -> EnvBinding | None:
        rows = self._fetch(
            "SELECT * FROM env_bindings WHERE sandbox_id = %s AND ecosystem = %s", (sandbox_id, ecosystem)
        )
        return EnvBinding(**rows[0]) if rows else None

    def set_binding(self, binding: EnvBinding) -> None:
        self._exec(
            "INSERT INTO env_bindings (sandbox_id, ecosystem, fingerprint, env_key, lock, components, updated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (sandbox_id, ecosystem) DO UPDATE SET"
            " fingerprint = EXCLUDED.fingerprint, env_key = EXCLUDED.env_key, lock = EXCLUDED.lock,"
            " components = EXCLUDED.components, updated_at = EXCLUDED.updated_at",
            (
                binding.sandbox_id,
                binding.ecosystem,
                binding.fingerprint,
                binding.env_key,
                binding.lock,
                Jsonb(binding.components),
                binding.updated_at,
            ),
        )

    def delete_binding(self, sandbox_id: str, ecosystem: str) -> None:
        self._exec("DELETE FROM env_bindings WHERE sandbox_id = %s AND ecosystem = %s", (sandbox_id, ecosystem))

    # what each source asks of a sandbox's environment

    def get_needs(self, sandbox_id: str, ecosystem: str) -> list[SandboxNeed]:
        rows = self._fetch(
            "SELECT * FROM sandbox_needs WHERE sandbox_id = %s AND ecosystem = %s ORDER BY source",
            (sandbox_id, ecosystem),
        )
        return [SandboxNeed(**row) for row in rows]

    def set_need(self, need: SandboxNeed) -> None:
        self._exec(
            "INSERT INTO sandbox_needs (sandbox_id, ecosystem, source, requirements, optional, constraints,"
            " updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (sandbox_id, ecosystem, source) DO UPDATE SET"
            " requirements = EXCLUDED.requirements, optional = EXCLUDED.optional,"
            " constraints = EXCLUDED.constraints, updated_at = EXCLUDED.updated_at",
            (
                need.sandbox_id,
                need.ecosystem,
                need.source,
                Jsonb(need.requirements),
                Jsonb(need.optional),
                Jsonb(need.constraints),
                need.updated_at,
            ),
        )

    def delete_need(self, sandbox_id: str, ecosystem: str, source: str) -> None:
        self._exec(
            "DELETE FROM sandbox_needs WHERE sandbox_id = %s AND ecosystem = %s AND source = %s",
            (sandbox_id, ecosystem, source),
        )

    def bound_env_keys(self) -> set[str]:
        rows = self._fetch(
            "SELECT DISTINCT b.env_key FROM env_bindings b JOIN sandboxes s ON s.id = b.sandbox_id"
            " WHERE s.deleted_at IS NULL"
        )
        return {r["env_key"] for r in rows}

    # secrets (sealed by the service; this store never sees a value)

    def put_secret(self, row: SecretRow) -> None:
        self._exec(
            "INSERT INTO secrets (tenant, name, sealed, hosts, created_at) VALUES (%s,%s,%s,%s,%s)"
            " ON CONFLICT (tenant, name) DO UPDATE SET sealed = EXCLUDED.sealed, hosts = EXCLUDED.hosts,"
            " created_at = EXCLUDED.created_at",
            (row.tenant, row.name, row.sealed, Jsonb(row.hosts), row.created_at),
        )

    def get_secret(self, tenant: str, name: str) -> SecretRow | None:
        rows = self._fetch("SELECT * FROM secrets WHERE tenant = %s AND name = %s", (tenant, name))
        return SecretRow(**rows[0]) if rows else None

    def list_secrets(self, tenant: str) -> list[SecretRow]:
        rows = self._fetch("SELECT * FROM secrets WHERE tenant = %s ORDER BY name", (tenant,))
        return [SecretRow(**r) for r in rows]

    def delete_secret(self, tenant: str, name: str) -> bool:
        return self._exec("DELETE FROM secrets WHERE tenant = %s AND name = %s", (tenant, name)) > 0

    def close(self) -> None:
        self._pool.close()
