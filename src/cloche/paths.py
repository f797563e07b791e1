"""Every on-disk location cloche uses, computed in one place from the data dir.

Layout (all under ``data_dir``, owned by the server's uid and 0711, so sandbox uids can traverse to what is bound
into their jails but cannot list it; every entry directly in it is private: files 0600, folders without read or
write for group and others, see ``DataPaths.make_private``)::

    cloche.db            SQLite metadata (WAL)
    secrets.key          the key that seals secrets in cloche.db (unless CLOCHE_SECRETS_KEY is set), 0600
    workspaces/<sb_id>/  one workspace per sandbox, owned by the sandbox's host uid, mode 0700: the mount point
                         of its volume (or a plain folder when the quota is enforced by walking it)
    volumes/<sb_id>.img  each workspace's ext4 image (sparse), root-only
    jail/                read-only files bound into every jail (synthetic /etc/passwd, ...)
    tmp/                 scratch space for the server; emptied at start-up
    run/                 per-run sockets (egress) and each resident's socket folder (rs_*/), emptied at start-up
    envs/<key>/          the environment store: sealed, immutable, shared read-only
    cache/<ecosystem>/   installer caches, written only by install jails that run no third-party code
    facts/<ecosystem>/   registry facts the server read about packages (host side, with a TTL)
    facts/builds/        what building a lock concluded, by the lock it started from (repaired, unrepairable, failed)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cloche.errors import UnsafeDataDir

# Host-wide, outside any data dir: the uid-range locks every server on the host takes (jail/uid_lock.py).
UID_LOCK_DIR = Path("/run/cloche/uid-locks")


class _Entry:
    """An entry directly in the data dir, by name: ``paths.db`` is ``paths.root / "cloche.db"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, paths: DataPaths, owner: type[DataPaths] | None = None) -> Path:
        return paths.root / self.name


@dataclass(frozen=True)
class DataPaths:
    root: Path

    # The layout drawn above, one entry a line.
    db = _Entry("cloche.db")
    secrets_key = _Entry("secrets.key")
    workspaces = _Entry("workspaces")
    volumes = _Entry("volumes")
    jail = _Entry("jail")
    tmp = _Entry("tmp")
    run = _Entry("run")
    envs = _Entry("envs")
    cache = _Entry("cache")
    facts = _Entry("facts")

    def workspace(self, sandbox_id: str) -> Path:
        return self.workspaces / sandbox_id

    def registry_facts(self, ecosystem: str) -> Path:
        """The server's own cache of what a registry said about packages (never written by a jail)."""
        return self.facts / ecosystem

    @property
    def build_verdicts(self) -> Path:
        """What building each lock concluded, by the key of the lock it started from (host side)."""
        return self.facts / "builds"

    def create(self) -> list[Path]:
        """Create the layout, traversable (0711) but not listable by sandbox uids, and make it private.

        Returns the entries whose mode had to be fixed; another user's data dir is refused before any change.
        """
        if self.root.exists():
            self._check_owner(self.root, self.root.lstat())
        for directory in (self.root, self.workspaces, self.jail, self.run, self.envs):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o711)
        for private in (self.cache,):
            private.mkdir(exist_ok=True)
            os.chmod(private, 0o711)
        # Host-only state made lazily later: private from the start, as make_private only runs at start-up.
        self.facts.mkdir(exist_ok=True)
        os.chmod(self.facts, 0o700)
        self.volumes.mkdir(exist_ok=True)
        os.chmod(self.volumes, 0o700)  # raw images: root only
        # Install jails (builder uid) read their inputs from session dirs below tmp/.
        self.tmp.mkdir(exist_ok=True)
        os.chmod(self.tmp, 0o711)
        return self.make_private()

    def make_private(self) -> list[Path]:
        """Hold the data dir's invariant, or refuse to run on it; returns the entries whose mode was fixed.

        Every entry directly in the data dir belongs to the server's uid; files are at most 0600 (the metadata
        database holds sandboxes' env values and runs' output); folders lose group and other read and write and
        keep only the search bit sandbox uids need to reach what their jails bind. Whatever lies deeper is each
        folder's own business (workspaces are their sandbox's, environments are read-only for all).
        """
        fixed = []
        for path in [self.root, *self.root.iterdir()]:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue  # its own mode means nothing; what it names is outside this invariant
            self._check_owner(path, info)
            mode = stat.S_IMODE(info.st_mode)
            wanted = mode & ~0o066 if stat.S_ISDIR(info.st_mode) else mode & ~0o077
            if wanted != mode:
                os.chmod(path, wanted)
                fixed.append(path)
        return fixed

    def _check_owner(self, path: Path, info: os.stat_result) -> None:
        me = os.geteuid()
        if info.st_uid != me:
            raise UnsafeDataDir(
                f"{path} is owned by uid {info.st_uid}, not by the server's uid {me}, so that user could read or "
                f"change cloche's state; run 'chown -R {me}:{me} {self.root}' or choose another --data-dir"
            )
