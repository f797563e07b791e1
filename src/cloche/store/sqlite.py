"""Embedded SQLite implementation of ``MetadataStore`` (WAL, one connection, one writer at a time)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloche.store.metadata import EnvBinding, RunRow, SandboxNeed, SandboxRow, SecretRow
from cloche.store.sqlite_schema import ADDED_COLUMNS, INDEXES, SCHEMA, SCHEMA_VERSION

PRIVATE_MODE = 0o600  # sandboxes' env values and runs' output: no other local user may read them

ON_NODE = " AND (?1 IS NULL OR placement = ?1)"  # one node's sandboxes, or every node's when None


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _req_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


class SqliteMetadataStore:
    """One connection shared behind a lock: SQLite allows one writer anyway, and calls are sub-millisecond."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        # Private from birth: SQLite gives its -wal and -shm files the database file's own mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE))
        for file in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(file, PRIVATE_MODE)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(SCHEMA)
            for table, column, definition in ADDED_COLUMNS:
                have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            self._db.executescript(INDEXES)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # sandboxes

    @staticmethod
    def _sandbox(row: sqlite3.Row) -> SandboxRow:
        return SandboxRow(
            id=row["id"],
            tenant=row["tenant"],
            language=row["language"],
            host_uid=row["host_uid"],
            created_at=_req_dt(row["created_at"]),
            last_used_at=_req_dt(row["last_used_at"]),
            ttl_seconds=row["ttl_seconds"],
            limits=json.loads(row["limits"]),
            env=json.loads(row["env"]),
            deleted_at=_dt(row["deleted_at"]),
            deleted_reason=row["deleted_reason"],
            egress=None if row["egress"] is None else json.loads(row["egress"]),
            secrets=json.loads(row["secrets"]),
            placement=row["placement"],
            isolation=row["isolation"],
        )

    def insert_sandbox(self, row: SandboxRow) -> None:
        self._exec(
            "INSERT INTO sandboxes (id, tenant, language, host_uid, created_at, last_used_at, ttl_seconds,"
            " limits, env, egress, secrets, placement, isolation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.id,
                row.tenant,
                row.language,
                row.host_uid,
                _ts(row.created_at),
                _ts(row.last_used_at),
                row.ttl_seconds,
                json.dumps(row.limits),
                json.dumps(row.env),
                None if row.egress is None else json.dumps(row.egress),
                json.dumps(row.secrets),
                row.placement,
                row.isolation,
            ),
        )

    def get_sandbox(self, sandbox_id: str) -> SandboxRow | None:
        rows = self._fetch("SELECT * FROM sandboxes WHERE id = ?", (sandbox_id,))
        return self._sandbox(rows[0]) if rows else None

    def list_sandboxes(self, tenant: str) -> list[SandboxRow]:
        rows = self._fetch(
            "SELECT * FROM sandboxes WHERE tenant = ? AND deleted_at IS NULL ORDER BY created_at", (tenant,)
        )
        return [self._sandbox(r) for r in rows]

    def touch_sandbox(self, sandbox_id: str, when: datetime) -> None:
        self._exec("UPDATE sandboxes SET last_used_at = ? WHERE id = ?", (_ts(when), sandbox_id))

    def set_language(self, sandbox_id: str, language: str) -> None:
        self._exec("UPDATE sandboxes SET language = ? WHERE id = ?", (language, sandbox_id))

    def mark_deleted(self, sandbox_id: str, when: datetime, reason: str) -> None:
        self._exec(
            "UPDATE sandboxes SET deleted_at = ?, deleted_reason = ? WHERE id = ? AND deleted_at IS NULL",
            (_ts(when), reason, sandbox_id),
        )

    def live_sandbox_ids(self, placement: str | None = None) -> set[str]:
        return {r[0] for r in self._fetch("SELECT id FROM sandboxes WHERE deleted_at IS NULL" + ON_NODE, (placement,))}

    def used_uids(self, placement: str | None = None) -> set[int]:
        sql = "SELECT host_uid FROM sandboxes WHERE deleted_at IS NULL" + ON_NODE
        return {r[0] for r in self._fetch(sql, (placement,))}

    def expired_sandboxes(self, now: datetime, placement: str | None = None) -> list[SandboxRow]:
        sql = "SELECT * FROM sandboxes WHERE deleted_at IS NULL AND ttl_seconds IS NOT NULL" + ON_NODE
        rows = self._fetch(sql, (placement,))
        live = [self._sandbox(r) for r in rows]
        return [s for s in live if s.ttl_seconds and (now - s.last_used_at).total_seconds() > s.ttl_seconds]

    # runs

    @staticmethod
    def _run(row: sqlite3.Row) -> RunRow:
        return RunRow(
            id=row["id"],
            sandbox_id=row["sandbox_id"],
            argv=json.loads(row["argv"]),
            status=row["status"],
            exit_code=row["exit_code"],
            stdout=row["stdout"],
            stderr=row["stderr"],
            output=row["output"],
            truncated=bool(row["truncated"]),
            duration_ms=row["duration_ms"],
            started_at=_req_dt(row["started_at"]),
            finished_at=_dt(row["finished_at"]),
            error=row["error"],
            extra=json.loads(row["extra"]),
        )

    def insert_run(self, row: RunRow) -> None:
        self._exec(
            "INSERT INTO runs (id, sandbox_id, argv, status, started_at, extra) VALUES (?,?,?,?,?,?)",
            (
                row.id,
                row.sandbox_id,
                json.dumps(row.argv),
                row.status,
                _ts(row.started_at),
                json.dumps(row.extra),
            ),
        )

    def finish_run(self, row: RunRow) -> None:
        self._exec(
            "UPDATE runs SET status=?, exit_code=?, stdout=?, stderr=?, output=?, truncated=?, duration_ms=?,"
            " finished_at=?, error=?, extra=?, argv=? WHERE id=?",
            (
                row.status,
                row.exit_code,
                row.stdout,
                row.stderr,
                row.output,
                int(row.truncated),
                row.duration_ms,
                _ts(row.finished_at),
                row.error,
                json.dumps(row.extra),
                json.dumps(row.argv),
                row.id,
            ),
        )

    def save_output(self, run_id: str, stdout: str, stderr: str, output: str) -> None:
        self._exec(
            "UPDATE runs SET stdout=?, stderr=?, output=? WHERE id=? AND status='running'",
            (stdout, stderr, output, run_id),
        )

    def get_run(self, sandbox_id: str, run_id: str) -> RunRow | None:
        rows = self._fetch("SELECT * FROM runs WHERE id = ? AND sandbox_id = ?", (run_id, sandbox_id))
        return self._run(rows[0]) if rows else None

    def list_runs(self, sandbox_id: str, limit: int) -> list[RunRow]:
        rows = self._fetch(
            "SELECT * FROM runs WHERE sandbox_id = ? ORDER BY started_at DESC LIMIT ?", (sandbox_id, limit)
        )
        return [self._run(r) for r in rows]

    def fail_unfinished_runs(self, when: datetime, reason: str, placement: str | None = None) -> list[RunRow]:
        sql = (
            "SELECT runs.* FROM runs JOIN sandboxes ON sandboxes.id = runs.sandbox_id WHERE runs.status = 'running'"
            " AND (? IS NULL OR sandboxes.placement = ?)"
        )
        runs = [self._run(r) for r in self._fetch(sql, (placement, placement))]
        for run in runs:
            run.status, run.error, run.finished_at = "failed", reason, when
            run.duration_ms = int((when - run.started_at).total_seconds() * 1000)
            self._exec(
                "UPDATE runs SET status=?, finished_at=?, error=?, duration_ms=? WHERE id=? AND status='running'",
                (run.status, _ts(when), reason, run.duration_ms, run.id),
            )
        return runs

    # environment bindings

    def get_binding(self, sandbox_id: str, ecosystem: str) -> EnvBinding | None:
        rows = self._fetch("SELECT * FROM env_bindings WHERE sandbox_id = ? AND ecosystem = ?", (sandbox_id, ecosystem))
        if not rows:
            return None
        row = rows[0]
        return EnvBinding(
            sandbox_id=row["sandbox_id"],
            ecosystem=row["ecosystem"],
            fingerprint=row["fingerprint"],
            env_key=row["env_key"],
            lock=row["lock"],
            components=json.loads(row["components"]),
            updated_at=_req_dt(row["updated_at"]),
        )

    def set_binding(self, binding: EnvBinding) -> None:
        self._exec(
            "INSERT OR REPLACE INTO env_bindings (sandbox_id, ecosystem, fingerprint, env_key, lock, components,"
            " updated_at) VALUES (?,?,?,?,?,?,?)",
            (
                binding.sandbox_id,
                binding.ecosystem,
                binding.fingerprint,
                binding.env_key,
                binding.lock,
                json.dumps(binding.components),
                _ts(binding.updated_at),
            ),
        )

    # what each source asks of a sandbox's environment

    def get_needs(self, sandbox_id: str, ecosystem: str) -> list[SandboxNeed]:
        rows = self._fetch(
            "SELECT * FROM sandbox_needs WHERE sandbox_id = ? AND ecosystem = ? ORDER BY source",
            (sandbox_id, ecosystem),
        )
        return [
            SandboxNeed(
                sandbox_id=row["sandbox_id"],
                ecosystem=row["ecosystem"],
                source=row["source"],
                requirements=json.loads(row["requirements"]),
                optional=json.loads(row["optional"]),
                constraints=json.loads(row["constraints"]),
                updated_at=_req_dt(row["updated_at"]),
            )
            for row in rows
        ]

    def set_need(self, need: SandboxNeed) -> None:
        self._exec(
            "INSERT OR REPLACE INTO sandbox_needs (sandbox_id, ecosystem, source, requirements, optional, constraints,"
            " updated_at) VALUES (?,?,?,?,?,?,?)",
            (
                need.sandbox_id,
                need.ecosystem,
                need.source,
                json.dumps(need.requirements),
                json.dumps(need.optional),
                json.dumps(need.constraints),
                _ts(need.updated_at),
            ),
        )

    def delete_need(self, sandbox_id: str, ecosystem: str, source: str) -> None:
        self._exec(
            "DELETE FROM sandbox_needs WHERE sandbox_id = ? AND ecosystem = ? AND source = ?",
            (sandbox_id, ecosystem, source),
        )

    def delete_binding(self, sandbox_id: str, ecosystem: str) -> None:
        self._exec("DELETE FROM env_bindings WHERE sandbox_id = ? AND ecosystem = ?", (sandbox_id, ecosystem))

    def bound_env_keys(self) -> set[str]:
        rows = self._fetch(
            "SELECT DISTINCT b.env_key FROM env_bindings b JOIN sandboxes s ON s.id = b.sandbox_id"
            " WHERE s.deleted_at IS NULL"
        )
        return {r[0] for r in rows}

    # secrets (sealed by the service; this store never sees a value)

    @staticmethod
    def _secret(row: sqlite3.Row) -> SecretRow:
        return SecretRow(
            tenant=row["tenant"],
            name=row["name"],
            sealed=bytes(row["sealed"]),
            hosts=json.loads(row["hosts"]),
            created_at=_req_dt(row["created_at"]),
        )

    def put_secret(self, row: SecretRow) -> None:
        self._exec(
            "INSERT OR REPLACE INTO secrets (tenant, name, sealed, hosts, created_at) VALUES (?,?,?,?,?)",
            (row.tenant, row.name, row.sealed, json.dumps(row.hosts), _ts(row.created_at)),
        )

    def get_secret(self, tenant: str, name: str) -> SecretRow | None:
        rows = self._fetch("SELECT * FROM secrets WHERE tenant = ? AND name = ?", (tenant, name))
        return self._secret(rows[0]) if rows else None

    def list_secrets(self, tenant: str) -> list[SecretRow]:
        return [self._secret(r) for r in self._fetch("SELECT * FROM secrets WHERE tenant = ? ORDER BY name", (tenant,))]

    def delete_secret(self, tenant: str, name: str) -> bool:
        return self._exec("DELETE FROM secrets WHERE tenant = ? AND name = ?", (tenant, name)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
