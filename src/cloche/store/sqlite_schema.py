"""The embedded store's schema: tables as created today, columns added to older files, indexes.

PostgreSQL's schema is kept as numbered migrations (``pg_migrations.py``); SQLite files are brought up to date by
``CREATE TABLE IF NOT EXISTS`` plus the added columns, then stamped with ``SCHEMA_VERSION``.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    language TEXT,
    host_uid INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    ttl_seconds REAL,
    limits TEXT NOT NULL,
    env TEXT NOT NULL,
    deleted_at TEXT,
    deleted_reason TEXT,
    egress TEXT,
    secrets TEXT NOT NULL DEFAULT '[]',
    placement TEXT NOT NULL DEFAULT 'local',
    isolation TEXT NOT NULL DEFAULT 'bwrap'
);
CREATE INDEX IF NOT EXISTS sandboxes_tenant ON sandboxes(tenant, created_at);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    argv TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    output TEXT NOT NULL DEFAULT '',
    truncated INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    error TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_sandbox ON runs(sandbox_id, started_at);
CREATE TABLE IF NOT EXISTS env_bindings (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    ecosystem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    env_key TEXT NOT NULL,
    lock TEXT NOT NULL,
    components TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, ecosystem)
);
CREATE TABLE IF NOT EXISTS sandbox_needs (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    ecosystem TEXT NOT NULL,
    source TEXT NOT NULL,
    requirements TEXT NOT NULL,
    optional TEXT NOT NULL,
    constraints TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, ecosystem, source)
);
CREATE TABLE IF NOT EXISTS secrets (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    hosts TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
"""
# Columns added after a table first shipped: (table, column, definition), added to older database files.
ADDED_COLUMNS = (
    ("sandboxes", "secrets", "TEXT NOT NULL DEFAULT '[]'"),
    ("sandboxes", "isolation", "TEXT NOT NULL DEFAULT 'bwrap'"),
    ("sandboxes", "placement", "TEXT NOT NULL DEFAULT 'local'"),
)
# Indexes over added columns, made once the columns exist (a live uid is unique per node).
INDEXES = """
DROP INDEX IF EXISTS sandboxes_live_uid;
CREATE UNIQUE INDEX IF NOT EXISTS sandboxes_live_uid_per_node ON sandboxes(placement, host_uid)
    WHERE deleted_at IS NULL;
"""
