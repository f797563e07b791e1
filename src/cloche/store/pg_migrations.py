"""The PostgreSQL schema as numbered migrations, applied in order at start-up by ``apply``.

Rules: a migration, once shipped, is never edited; a change is a new migration with the next number. Each is
applied in one transaction (PostgreSQL's DDL is transactional) together with its row in ``schema_migrations``,
under a transaction-level advisory lock, so two servers starting on one empty database apply each migration
exactly once and the second one waits, then finds nothing to do.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloche.errors import StoreUnavailable

# One lock id for "changing cloche's schema" (pg_advisory_xact_lock takes a bigint; any fixed value works).
SCHEMA_LOCK_ID = 0x636C6F636865  # "cloche"

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE TABLE sandboxes (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    language TEXT,
    host_uid INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    ttl_seconds DOUBLE PRECISION,
    limits JSONB NOT NULL,
    env JSONB NOT NULL,
    deleted_at TIMESTAMPTZ,
    deleted_reason TEXT,
    egress JSONB,
    secrets JSONB NOT NULL DEFAULT '[]',
    placement TEXT NOT NULL
);
CREATE UNIQUE INDEX sandboxes_live_uid_per_node ON sandboxes(placement, host_uid) WHERE deleted_at IS NULL;
CREATE INDEX sandboxes_tenant ON sandboxes(tenant, created_at);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    argv JSONB NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    output TEXT NOT NULL DEFAULT '',
    truncated BOOLEAN NOT NULL DEFAULT FALSE,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    error TEXT,
    extra JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_sandbox ON runs(sandbox_id, started_at);
CREATE INDEX runs_running ON runs(status) WHERE status = 'running';
CREATE TABLE env_bindings (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    ecosystem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    env_key TEXT NOT NULL,
    lock TEXT NOT NULL,
    components JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sandbox_id, ecosystem)
);
CREATE TABLE sandbox_needs (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    ecosystem TEXT NOT NULL,
    source TEXT NOT NULL,
    requirements JSONB NOT NULL,
    optional JSONB NOT NULL,
    constraints JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sandbox_id, ecosystem, source)
);
CREATE TABLE secrets (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    hosts JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, name)
);
""",
    ),
    (2, "ALTER TABLE sandboxes ADD COLUMN isolation TEXT NOT NULL DEFAULT 'bwrap';"),  # the jail tier of its runs
)

LATEST = MIGRATIONS[-1][0]


def apply(conn: psycopg.Connection[Any]) -> list[int]:
    """Bring the database to ``LATEST``; returns the versions this call applied (none when already there)."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        with conn.cursor(row_factory=tuple_row) as cursor:
            done = {int(row[0]) for row in cursor.execute("SELECT version FROM schema_migrations").fetchall()}
        newer = {v for v in done if v > LATEST}
        if newer:
            raise StoreUnavailable(
                f"the database's schema is at version {max(newer)}, newer than this cloche knows ({LATEST}); "
                "upgrade this server before pointing it at that database"
            )
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied
