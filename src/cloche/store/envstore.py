"""The environment store: content-addressed, immutable dependency environments shared by sandboxes.

Invariants (see docs/dependencies.md):

- An entry's key is a hash of everything that determines its bytes: the exact lock, the toolchain ABI and
  platform, and ``STORE_FORMAT``. Same key, same contents; a different need gets a different key.
- Entries are built in a private temp dir, sealed (root-owned, no write bits), then renamed into place in one
  step. A crash mid-build leaves only a temp dir, which start-up removes; a reader never sees half an entry.
- Entries are never modified after the rename. Sandboxes see them only through read-only binds.
- An entry nobody references is removed only after a grace period (``prune``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloche.store import safefs

# 2: environments are built at /opt/cloche/env/<ecosystem> (paths such as venv shebangs are baked in).
STORE_FORMAT = 2
META = "cloche-env.json"
TEMP_PREFIX = ".build-"
BUILD_ABANDONED_SECONDS = 3600.0


COMPANION_SUFFIX = "-pyc"


def companion_key(key: str) -> str:
    """Key of an entry's companion (e.g. its precompiled bytecode): derived from, and collected with, the entry."""
    return key + COMPANION_SUFFIX


def environment_key(ecosystem: str, lock: str, abi: str) -> str:
    digest = hashlib.sha256(json.dumps([STORE_FORMAT, ecosystem, abi, lock]).encode()).hexdigest()
    return f"{ecosystem}-{digest[:40]}"


@dataclass(frozen=True)
class StoredEnvironment:
    key: str
    path: Path
    meta: dict[str, Any]


class EnvironmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)

    def path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> StoredEnvironment | None:
        path = self.path(key)
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, ValueError):
            return None
        return StoredEnvironment(key, path, meta)

    def new_build_dir(self) -> Path:
        """A private directory for one build; the caller hands it to the install jail."""
        path = self.root / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        path.mkdir(mode=0o700)
        return path

    def put(self, key: str, build_dir: Path, meta: dict[str, Any]) -> StoredEnvironment:
        """Seal ``build_dir`` and rename it into place; if another build won the race, keep theirs."""
        (build_dir / META).write_text(json.dumps({**meta, "key": key, "format": STORE_FORMAT, "created": time.time()}))
        _seal(build_dir)
        target = self.path(key)
        try:
            os.rename(build_dir, target)
        except OSError:
            if self.get(key) is None:
                raise
            discard(build_dir)
        found = self.get(key)
        assert found is not None
        return found

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(TEMP_PREFIX))

    def size_bytes(self, key: str) -> int:
        return sum(p.lstat().st_size for p in self.path(key).rglob("*"))

    def prune(self, referenced: Iterable[str], grace_seconds: float) -> list[str]:
        """Remove unreferenced entries older than the grace period, and stale temp dirs; returns keys removed."""
        keep = set(referenced)
        keep |= {companion_key(key) for key in keep}
        now = time.time()
        removed = []
        for entry in self.root.iterdir():
            try:
                age = now - entry.stat().st_mtime
            except FileNotFoundError:  # a build renamed into place (or discarded) meanwhile
                continue
            if entry.name.startswith(TEMP_PREFIX):
                # A build may be in flight: only ones idle for an hour are abandoned (start-up removes the rest).
                if age > max(grace_seconds, BUILD_ABANDONED_SECONDS):
                    discard(entry)
                continue
            if entry.name in keep:
                continue
            found = self.get(entry.name)
            created = float(found.meta.get("created", 0)) if found else 0.0
            if now - created > grace_seconds and age > grace_seconds:
                discard(entry)
                removed.append(entry.name)
        return removed

    def remove_temp(self) -> None:
        for entry in self.root.glob(f"{TEMP_PREFIX}*"):
            discard(entry)


def _seal(root: Path) -> None:
    """Root-owned and read-only: neither the builder's uid nor any sandbox can change it afterwards."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, 0, 0)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode) & ~0o7222  # drop write, setuid, setgid, sticky
            os.chmod(path, mode | 0o444 | (0o111 if stat.S_ISDIR(st.st_mode) else 0))
    os.chown(root, 0, 0)
    os.chmod(root, 0o555)


def discard(path: Path) -> None:
    """Remove a build or entry; install scripts wrote there, so treat it as hostile (no link is followed)."""
    safefs.remove_tree(path)
