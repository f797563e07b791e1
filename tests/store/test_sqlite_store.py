"""What only the SQLite store does: upgrade database files written by older versions in place (the shared
contract is in test_metadata_contract.py)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from cloche.store.metadata import SandboxRow
from cloche.store.sqlite import SqliteMetadataStore
from cloche.store.sqlite_schema import SCHEMA

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_database_from_before_secrets_and_placement_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        SCHEMA.replace(",\n    secrets TEXT NOT NULL DEFAULT '[]'", "").replace(
            ",\n    placement TEXT NOT NULL DEFAULT 'local'", ""
        )
        + "CREATE UNIQUE INDEX sandboxes_live_uid ON sandboxes(host_uid) WHERE deleted_at IS NULL;"
    )
    old.execute(
        "INSERT INTO sandboxes (id, tenant, host_uid, created_at, last_used_at, limits, env)"
        " VALUES ('sb_old', 't', 7, ?, ?, '{}', '{}')",
        (NOW.isoformat(), NOW.isoformat()),
    )
    old.commit()
    old.close()
    store = SqliteMetadataStore(path)
    row = store.get_sandbox("sb_old")
    assert row is not None and row.secrets == [] and row.placement == "local"
    store.insert_sandbox(SandboxRow("sb_elsewhere", "t", None, 7, NOW, NOW, None, {}, {}, placement="a2"))
    store.insert_sandbox(SandboxRow("sb_new", "t", None, 8, NOW, NOW, None, {}, {}, secrets=["TOKEN"]))
    again = store.get_sandbox("sb_new")
    assert again is not None and again.secrets == ["TOKEN"]
