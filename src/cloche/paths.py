"""Every on-disk location cloche uses, computed in one place from the data dir.

Layout (all under ``data_dir``, which is root-owned 0711 so sandbox uids can traverse but not list)::

    cloche.db            SQLite metadata (WAL)
    workspaces/<sb_id>/  one workspace per sandbox, owned by the sandbox's host uid, mode 0700
    jail/                read-only files bound into every jail (synthetic /etc/passwd, ...)
    tmp/                 scratch space for the server; emptied at start-up
    run/                 per-run sockets (egress), emptied at start-up
    envs/<key>/          the environment store: sealed, immutable, shared read-only
    cache/<ecosystem>/   installer caches, written only by install jails that run no third-party code
    facts/<ecosystem>/   registry facts the server read about packages (host side, with a TTL)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "cloche.db"

    @property
    def workspaces(self) -> Path:
        return self.root / "workspaces"

    def workspace(self, sandbox_id: str) -> Path:
        return self.workspaces / sandbox_id

    @property
    def jail(self) -> Path:
        return self.root / "jail"

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def registry_facts(self, ecosystem: str) -> Path:
        """The server's own cache of what a registry said about packages (never written by a jail)."""
        return self.root / "facts" / ecosystem

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def create(self) -> None:
        """Create the layout; traversable (0711) but not listable by sandbox uids."""
        for directory in (self.root, self.workspaces, self.jail, self.run, self.envs):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o711)
        for private in (self.cache,):
            private.mkdir(exist_ok=True)
            os.chmod(private, 0o711)
        # Install jails (builder uid) read their inputs from session dirs below tmp/.
        self.tmp.mkdir(exist_ok=True)
        os.chmod(self.tmp, 0o711)
