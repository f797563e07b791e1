"""Hashes of a workspace tree: the content hash each run's audit record carries ("which bytes were there"),
and a cheap stat-only signature that tells the dependency step whether anything changed at all.

Reads the workspace only through safefs, so no symlink is ever followed; a per-workspace digest cache keeps
repeated runs from re-reading unchanged files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cloche.errors import ClocheError
from cloche.store import safefs

DigestCache = dict[str, tuple[int, float, str]]  # path -> (size, mtime, sha256)


def _file_sha256(root: Path, rel: str) -> str | None:
    try:
        handle, _size = safefs.open_for_read(root, rel)
    except ClocheError:
        return None  # hard-linked or vanished: only its size counts
    digest = hashlib.sha256()
    with handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tree_hash(root: Path, cache: DigestCache | None = None) -> str:
    """A deterministic sha256 (hex) of a workspace tree, computed without following any symlink.

    Each entry contributes (path, type, detail): files their content sha256 and size, symlinks their target
    text, directories nothing (so empty ones count), anything else (FIFO, device) its type. Everything is
    included, ``__pycache__`` and dotfiles too: the hash answers "which bytes were there", not "which mattered".
    Not covered: permissions, owners, mtimes. Hardlinked files (nlink > 1) are never read by safefs, so only
    their size counts. Raises TooLarge past safefs.MAX_LIST_ENTRIES entries.
    """
    entries: list[list[Any]] = [["cloche-tree", 1]]
    seen: DigestCache = {}
    for info in sorted(safefs.list_dir(root, "", with_sha256=cache is None), key=lambda i: i.path):
        if info.type == "file":
            sha = info.sha256
            if cache is not None:
                # Files unchanged in size and mtime (ns resolution) since the last run are not read again.
                known = cache.get(info.path)
                if known is not None and known[:2] == (info.size, info.mtime):
                    sha = known[2]
                else:
                    sha = _file_sha256(root, info.path)
                if sha is not None:
                    seen[info.path] = (info.size, info.mtime, sha)
            detail: Any = [sha, info.size]
        elif info.type == "symlink":
            detail = _readlink_beneath(root, info.path)
        else:
            detail = None
        entries.append([info.path, info.type, detail])
    if cache is not None:
        cache.clear()
        cache.update(seen)
    # ensure_ascii escapes non-UTF-8 names (surrogateescape) too, so any name hashes deterministically.
    return hashlib.sha256(json.dumps(entries, separators=(",", ":"), ensure_ascii=True).encode()).hexdigest()


def _readlink_beneath(root: Path, rel: str) -> str | None:
    """Target text of the symlink at ``rel``, reaching its directory one O_NOFOLLOW step at a time."""
    *parents, name = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parents:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.readlink(name, dir_fd=fd)
    except OSError:
        return None  # changed since the listing; the entry still counts as a symlink
    finally:
        os.close(fd)


def workspace_signature(root: Path) -> tuple[str, int]:
    """Hash of every non-directory entry's (path, type, size, mtime in ns), read without following links, and
    how many entries that was.

    Directories are left out: an empty one (a mount point a run left behind) changes no detection, and any
    file added, removed or rewritten inside one changes its entry here.
    """
    entries = sorted(
        (info.path, info.type, info.size, info.mtime)
        for info in safefs.list_dir(root, "", with_sha256=False)
        if info.type != "dir"
    )
    return hashlib.sha256(repr(entries).encode()).hexdigest(), len(entries)
