"""The metadata store interface: sandboxes, runs, environment bindings and the needs behind them.

The service talks only to ``MetadataStore``; ``store/sqlite.py`` is the embedded implementation and
``store/postgres.py`` the shared one (several API servers and node agents on one database). Both are
``store/sql_store.py``'s ``SqlMetadataStore``, so a method added here is written there once (or, when the
databases must differ, in each); ``tests/store/test_metadata_contract.py`` runs the same checks against each.

Placement: every sandbox row names the node (``Settings.node_name``) whose agent holds its workspace and runs
it. What a node does for itself after a start (fail its unfinished runs, mount its workspaces, reap its expired
sandboxes, pick a free uid) is scoped by ``placement``; ``None`` means every node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cloche.jail.profile import Isolation


@dataclass
class SandboxRow:
    id: str
    tenant: str
    language: str | None
    host_uid: int
    created_at: datetime
    last_used_at: datetime
    ttl_seconds: float | None
    limits: dict[str, Any]
    env: dict[str, str]
    deleted_at: datetime | None = None
    deleted_reason: str | None = None
    egress: list[str] | None = None  # None: the server default
    secrets: list[str] = field(default_factory=list)  # names of the tenant's secrets every run gets
    placement: str = "local"  # the node (agent) that holds the workspace and runs the code
    isolation: Isolation = "bwrap"  # the jail tier every run of the sandbox uses


@dataclass
class SecretRow:
    """A tenant's secret: its value sealed (nonce + AES-GCM ciphertext), never stored in the clear."""

    tenant: str
    name: str
    sealed: bytes
    hosts: list[str]
    created_at: datetime


@dataclass
class RunRow:
    id: str
    sandbox_id: str
    argv: list[str]
    status: str
    started_at: datetime
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    output: str = ""
    truncated: bool = False
    duration_ms: int = 0
    finished_at: datetime | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnvBinding:
    """Which environment a sandbox uses for one ecosystem, and the detection fingerprint it was built for."""

    sandbox_id: str
    ecosystem: str
    fingerprint: str
    env_key: str
    lock: str
    components: list[dict[str, Any]]
    updated_at: datetime


@dataclass
class SandboxNeed:
    """What one source asks of a sandbox's environment for one ecosystem; the environment its runs get covers
    the union of every source's needs (see docs/dependencies.md, "What a sandbox's environment covers").

    ``source`` is ``declared`` (packages installed by a typed ``pip install``/``npm install``) or
    ``entry:<path>`` (what an entry point's detection asked for when it last ran).
    """

    sandbox_id: str
    ecosystem: str
    source: str
    requirements: list[str]  # as the ecosystem writes them (PEP 508 strings, "name@spec")
    optional: list[str]  # installed when resolvable, never fatal
    constraints: list[str]  # pins that apply only if something requires the package
    updated_at: datetime


class MetadataStore(Protocol):
    """Durable sandbox and run records. Every method is atomic on its own."""

    def insert_sandbox(self, row: SandboxRow) -> None: ...

    def get_sandbox(self, sandbox_id: str) -> SandboxRow | None:
        """The row, deleted ones included (the caller decides what a tombstone means)."""

    def list_sandboxes(self, tenant: str) -> list[SandboxRow]:
        """Live sandboxes of one tenant, oldest first."""

    def touch_sandbox(self, sandbox_id: str, when: datetime) -> None: ...

    def set_language(self, sandbox_id: str, language: str) -> None: ...

    def mark_deleted(self, sandbox_id: str, when: datetime, reason: str) -> None: ...

    def live_sandbox_ids(self, placement: str | None = None) -> set[str]:
        """Ids of sandboxes not deleted (on one node, or on all)."""

    def used_uids(self, placement: str | None = None) -> set[int]:
        """Host uids held by live sandboxes (a uid is unique per node, not across nodes)."""

    def expired_sandboxes(self, now: datetime, placement: str | None = None) -> list[SandboxRow]:
        """Live sandboxes whose idle TTL has run out."""

    def insert_run(self, row: RunRow) -> None: ...

    def finish_run(self, row: RunRow) -> None: ...

    def save_output(self, run_id: str, stdout: str, stderr: str, output: str) -> None:
        """Keep a running run's output so far (a crash or a kill then loses at most the last moment)."""

    def get_run(self, sandbox_id: str, run_id: str) -> RunRow | None: ...

    def list_runs(self, sandbox_id: str, limit: int) -> list[RunRow]:
        """Most recent first."""

    def fail_unfinished_runs(self, when: datetime, reason: str, placement: str | None = None) -> list[RunRow]:
        """Mark runs left 'running' (by a crash) as failed; returns them as they now are. With ``placement``,
        only runs of sandboxes on that node (another node's runs may be running right now)."""

    def get_binding(self, sandbox_id: str, ecosystem: str) -> EnvBinding | None: ...

    def set_binding(self, binding: EnvBinding) -> None: ...

    def delete_binding(self, sandbox_id: str, ecosystem: str) -> None:
        """The sandbox no longer needs an environment for ``ecosystem``."""

    def get_needs(self, sandbox_id: str, ecosystem: str) -> list[SandboxNeed]:
        """Every source's needs for one ecosystem, ordered by source."""

    def set_need(self, need: SandboxNeed) -> None:
        """Insert or replace the needs of ``need.source``."""

    def delete_need(self, sandbox_id: str, ecosystem: str, source: str) -> None: ...

    def bound_env_keys(self) -> set[str]:
        """Environment keys referenced by live sandboxes (the garbage collector keeps these)."""

    def put_secret(self, row: SecretRow) -> None:
        """Insert or replace the tenant's secret of that name."""

    def get_secret(self, tenant: str, name: str) -> SecretRow | None: ...

    def list_secrets(self, tenant: str) -> list[SecretRow]:
        """By name."""

    def delete_secret(self, tenant: str, name: str) -> bool:
        """False when there was none."""

    def close(self) -> None: ...
