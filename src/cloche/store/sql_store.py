"""``MetadataStore`` over SQL, written once for SQLite and PostgreSQL: the statements and the row mapping.

A store subclasses ``SqlMetadataStore`` and supplies ``_exec`` (one statement, its row count), ``_fetch`` (one
statement, its rows by column name) and a ``Dialect`` (how its driver takes and gives back JSON and timestamps).
Statements use ``?`` placeholders; PostgreSQL's store turns them into ``%s``. Each table's columns are named as
its row dataclass's fields, so a ``Table`` maps a record to parameters and a row back to a record by name.

What stays in each store is its own: connections, SQLite's single writer and schema, PostgreSQL's pool and
migrations, and ``fail_unfinished_runs`` (one ``UPDATE ... RETURNING`` on PostgreSQL, shared by several servers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from cloche.store.metadata import EnvBinding, RunRow, SandboxNeed, SandboxRow, SecretRow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")

# One node's sandboxes, or every node's when the parameter (given twice) is None. The cast lets PostgreSQL type
# a NULL parameter.
ON_NODE = " AND (CAST(? AS TEXT) IS NULL OR placement = ?)"


class DbRow(Protocol):
    def __getitem__(self, column: str, /) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """How a driver takes (``dump_*``) and gives back (``load_*``) JSON and timestamps; None stays NULL."""

    dump_json: Callable[[Any], Any]
    load_json: Callable[[Any], Any]
    dump_time: Callable[[datetime], Any]
    load_time: Callable[[Any], datetime]


@dataclass(frozen=True)
class Table(Generic[R]):
    """One table, its record type, and which columns hold JSON, timestamps or booleans (SQLite's are 0/1)."""

    name: str
    record: type[R]
    key: tuple[str, ...]
    json: frozenset[str]
    times: frozenset[str]
    flags: frozenset[str] = frozenset()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.record))

    def insert(self, columns: Sequence[str], *, replace: bool = False) -> str:
        sql = f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})"
        if replace:  # every column but the key takes the new row's value
            new = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in self.key)
            sql += f" ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {new}"
        return sql

    def update(self, columns: Sequence[str]) -> str:
        where = " AND ".join(f"{c} = ?" for c in self.key)
        return f"UPDATE {self.name} SET {', '.join(f'{c} = ?' for c in columns)} WHERE {where}"

    def values(self, record: R, columns: Sequence[str], dialect: Dialect) -> tuple[Any, ...]:
        return tuple(self._dump(column, getattr(record, column), dialect) for column in columns)

    def load(self, row: DbRow, dialect: Dialect) -> R:
        return self.record(**{c: self._load(c, row[c], dialect) for c in self.columns})

    def _dump(self, column: str, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if column in self.json:
            return dialect.dump_json(value)
        return dialect.dump_time(value) if column in self.times else value

    def _load(self, column: str, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if column in self.json:
            return dialect.load_json(value)
        if column in self.times:
            return dialect.load_time(value)
        return bool(value) if column in self.flags else value


SANDBOXES = Table(
    "sandboxes",
    SandboxRow,
    key=("id",),
    json=frozenset({"limits", "env", "egress", "secrets"}),
    times=frozenset({"created_at", "last_used_at", "deleted_at"}),
)
RUNS = Table(
    "runs",
    RunRow,
    key=("id",),
    json=frozenset({"argv", "extra"}),
    times=frozenset({"started_at", "finished_at"}),
    flags=frozenset({"truncated"}),
)
BINDINGS = Table(
    "env_bindings",
    EnvBinding,
    key=("sandbox_id", "ecosystem"),
    json=frozenset({"components"}),
    times=frozenset({"updated_at"}),
)
NEEDS = Table(
    "sandbox_needs",
    SandboxNeed,
    key=("sandbox_id", "ecosystem", "source"),
    json=frozenset({"requirements", "optional", "constraints"}),
    times=frozenset({"updated_at"}),
)
SECRETS = Table(
    "secrets", SecretRow, key=("tenant", "name"), json=frozenset({"hosts"}), times=frozenset({"created_at"})
)

NEW_SANDBOX = tuple(c for c in SANDBOXES.columns if c not in ("deleted_at", "deleted_reason"))
NEW_RUN = ("id", "sandbox_id", "argv", "status", "started_at", "extra")
FINISHED_RUN = tuple(c for c in RUNS.columns if c not in ("id", "sandbox_id", "started_at"))


class SqlMetadataStore(ABC):
    dialect: ClassVar[Dialect]

    @abstractmethod
    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[DbRow]:
        """Run one statement; its rows, each indexed by column name."""

    @abstractmethod
    def fail_unfinished_runs(self, when: datetime, reason: str, placement: str | None = None) -> list[RunRow]: ...

    @abstractmethod
    def close(self) -> None: ...

    def _put(self, table: Table[R], record: R, columns: Sequence[str], *, replace: bool = False) -> None:
        self._exec(table.insert(columns, replace=replace), table.values(record, columns, self.dialect))

    def _load(self, table: Table[R], sql: str, params: tuple[Any, ...] = ()) -> list[R]:
        return [table.load(row, self.dialect) for row in self._fetch(sql, params)]

    def _one(self, table: Table[R], sql: str, params: tuple[Any, ...]) -> R | None:
        rows = self._load(table, sql, params)
        return rows[0] if rows else None

    # sandboxes

    def insert_sandbox(self, row: SandboxRow) -> None:
        self._put(SANDBOXES, row, NEW_SANDBOX)

    def get_sandbox(self, sandbox_id: str) -> SandboxRow | None:
        return self._one(SANDBOXES, "SELECT * FROM sandboxes WHERE id = ?", (sandbox_id,))

    def list_sandboxes(self, tenant: str) -> list[SandboxRow]:
        sql = "SELECT * FROM sandboxes WHERE tenant = ? AND deleted_at IS NULL ORDER BY created_at, id"
        return self._load(SANDBOXES, sql, (tenant,))

    def touch_sandbox(self, sandbox_id: str, when: datetime) -> None:
        self._exec("UPDATE sandboxes SET last_used_at = ? WHERE id = ?", (self.dialect.dump_time(when), sandbox_id))

    def set_language(self, sandbox_id: str, language: str) -> None:
        self._exec("UPDATE sandboxes SET language = ? WHERE id = ?", (language, sandbox_id))

    def mark_deleted(self, sandbox_id: str, when: datetime, reason: str) -> None:
        self._exec(
            "UPDATE sandboxes SET deleted_at = ?, deleted_reason = ? WHERE id = ? AND deleted_at IS NULL",
            (self.dialect.dump_time(when), reason, sandbox_id),
        )

    def live_sandbox_ids(self, placement: str | None = None) -> set[str]:
        rows = self._fetch("SELECT id FROM sandboxes WHERE deleted_at IS NULL" + ON_NODE, (placement, placement))
        return {r["id"] for r in rows}

    def used_uids(self, placement: str | None = None) -> set[int]:
        sql = "SELECT host_uid FROM sandboxes WHERE deleted_at IS NULL" + ON_NODE
        return {r["host_uid"] for r in self._fetch(sql, (placement, placement))}

    def expired_sandboxes(self, now: datetime, placement: str | None = None) -> list[SandboxRow]:
        sql = "SELECT * FROM sandboxes WHERE deleted_at IS NULL AND ttl_seconds IS NOT NULL" + ON_NODE
        live = self._load(SANDBOXES, sql, (placement, placement))
        # Compared here, not in SQL: a huge TTL overflows a PostgreSQL interval, and both stores decide alike.
        return [s for s in live if s.ttl_seconds and (now - s.last_used_at).total_seconds() > s.ttl_seconds]

    # runs

    def insert_run(self, row: RunRow) -> None:
        self._put(RUNS, row, NEW_RUN)

    def finish_run(self, row: RunRow) -> None:
        self._exec(RUNS.update(FINISHED_RUN), RUNS.values(row, (*FINISHED_RUN, *RUNS.key), self.dialect))

    def save_output(self, run_id: str, stdout: str, stderr: str, output: str) -> None:
        self._exec(
            "UPDATE runs SET stdout = ?, stderr = ?, output = ? WHERE id = ? AND status = 'running'",
            (stdout, stderr, output, run_id),
        )

    def get_run(self, sandbox_id: str, run_id: str) -> RunRow | None:
        return self._one(RUNS, "SELECT * FROM runs WHERE id = ? AND sandbox_id = ?", (run_id, sandbox_id))

    def list_runs(self, sandbox_id: str, limit: int) -> list[RunRow]:
        sql = "SELECT * FROM runs WHERE sandbox_id = ? ORDER BY started_at DESC, id DESC LIMIT ?"
        return self._load(RUNS, sql, (sandbox_id, limit))

    # environment bindings

    def get_binding(self, sandbox_id: str, ecosystem: str) -> EnvBinding | None:
        sql = "SELECT * FROM env_bindings WHERE sandbox_id = ? AND ecosystem = ?"
        return self._one(BINDINGS, sql, (sandbox_id, ecosystem))

    def set_binding(self, binding: EnvBinding) -> None:
        self._put(BINDINGS, binding, BINDINGS.columns, replace=True)

    def delete_binding(self, sandbox_id: str, ecosystem: str) -> None:
        self._exec("DELETE FROM env_bindings WHERE sandbox_id = ? AND ecosystem = ?", (sandbox_id, ecosystem))

    def bound_env_keys(self) -> set[str]:
        rows = self._fetch(
            "SELECT DISTINCT b.env_key AS env_key FROM env_bindings b JOIN sandboxes s ON s.id = b.sandbox_id"
            " WHERE s.deleted_at IS NULL"
        )
        return {r["env_key"] for r in rows}

    # what each source asks of a sandbox's environment

    def get_needs(self, sandbox_id: str, ecosystem: str) -> list[SandboxNeed]:
        sql = "SELECT * FROM sandbox_needs WHERE sandbox_id = ? AND ecosystem = ? ORDER BY source"
        return self._load(NEEDS, sql, (sandbox_id, ecosystem))

    def set_need(self, need: SandboxNeed) -> None:
        self._put(NEEDS, need, NEEDS.columns, replace=True)

    def delete_need(self, sandbox_id: str, ecosystem: str, source: str) -> None:
        self._exec(
            "DELETE FROM sandbox_needs WHERE sandbox_id = ? AND ecosystem = ? AND source = ?",
            (sandbox_id, ecosystem, source),
        )

    # secrets (sealed by the service; this store never sees a value)

    def put_secret(self, row: SecretRow) -> None:
        self._put(SECRETS, row, SECRETS.columns, replace=True)

    def get_secret(self, tenant: str, name: str) -> SecretRow | None:
        return self._one(SECRETS, "SELECT * FROM secrets WHERE tenant = ? AND name = ?", (tenant, name))

    def list_secrets(self, tenant: str) -> list[SecretRow]:
        return self._load(SECRETS, "SELECT * FROM secrets WHERE tenant = ? ORDER BY name", (tenant,))

    def delete_secret(self, tenant: str, name: str) -> bool:
        return self._exec("DELETE FROM secrets WHERE tenant = ? AND name = ?", (tenant, name)) > 0
