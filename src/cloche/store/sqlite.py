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

from cloche.store.metadata import RunRow
from cloche.store.sql_store import ON_NODE, RUNS, Dialect, SqlMetadataStore
from cloche.store.sqlite_schema import ADDED_COLUMNS, INDEXES, SCHEMA, SCHEMA_VERSION

PRIVATE_MODE = 0o600  # sandboxes' env values and runs' output: no other local user may read them


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


class SqliteMetadataStore(SqlMetadataStore):
    """One connection shared behind a lock: SQLite allows one writer anyway, and calls are sub-millisecond.
    JSON is stored as text and timestamps as ISO 8601 text in UTC (so they sort as text)."""

    dialect = Dialect(dump_json=json.dumps, load_json=json.loads, dump_time=_ts, load_time=datetime.fromisoformat)

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

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def fail_unfinished_runs(self, when: datetime, reason: str, placement: str | None = None) -> list[RunRow]:
        sql = "SELECT runs.* FROM runs JOIN sandboxes ON sandboxes.id = runs.sandbox_id WHERE runs.status = 'running'"
        runs = self._load(RUNS, sql + ON_NODE, (placement, placement))
        for run in runs:
            run.status, run.error, run.finished_at = "failed", reason, when
            run.duration_ms = int((when - run.started_at).total_seconds() * 1000)
            self._exec(
                "UPDATE runs SET status=?, finished_at=?, error=?, duration_ms=? WHERE id=? AND status='running'",
                (run.status, _ts(when), reason, run.duration_ms, run.id),
            )
        return runs

    def close(self) -> None:
        with self._lock:
            self._db.close()
