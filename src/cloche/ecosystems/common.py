"""Small helpers the Node, Go and Java ecosystems share: workspace reads through safefs, fingerprints,
installer error text, and where local package sources appear inside install jails."""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cloche.errors import ClocheError, InvalidRequest
from cloche.store import safefs

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_SOURCE_BYTES = 1024 * 1024
MAX_SOURCE_FILES = 2000
# Folders no language's sources live in, and which can be huge: never entered while looking for sources.
SKIPPED_DIRS = frozenset({".cloche", ".git", "node_modules", "vendor", "target", "build", ".gradle", "testdata"})
LOCAL_SOURCES = "/opt/cloche/sources"  # where a file:// registry fixture appears in install jails


def dirs_up(entry: str) -> list[str]:
    """The entry's directory, its parents, ..., '' (the workspace root)."""
    dirs = [posixpath.dirname(entry)]
    while dirs[-1]:
        dirs.append(posixpath.dirname(dirs[-1]))
    return dirs


def join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def present(root: Path, rel: str) -> bool:
    """Any kind of entry counts, so a planted symlink is refused when read rather than skipped."""
    try:
        return safefs.lookup(root, rel) is not None
    except (ClocheError, OSError):
        return False


def find_up(root: Path, entry: str, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(directory, name) of the first of ``names`` in the entry's folder or a parent up to the root."""
    for base in dirs_up(entry):
        for name in names:
            if present(root, join(base, name)):
                return base, name
    return None


def read_text(root: Path, rel: str, max_bytes: int = MAX_MANIFEST_BYTES) -> str:
    data = safefs.read_file(root, rel, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"{rel} is not valid UTF-8 (byte {e.start})") from e


def source_files(root: Path, base: str, suffix: str, limit: int = MAX_SOURCE_FILES) -> list[str]:
    """Regular files ending in ``suffix`` below ``base`` (workspace-relative), skipping build and
    dependency folders and dot-folders; at most ``limit`` of them, in path order."""

    def prune(rel: str) -> bool:
        name = posixpath.basename(rel)
        return name in SKIPPED_DIRS or name.startswith((".", "_"))

    try:
        entries = safefs.list_dir(root, base, with_sha256=False, prune=prune, max_entries=50_000)
    except (ClocheError, OSError):
        return []
    found = [e.path for e in entries if e.type == "file" and e.path.endswith(suffix)]
    return sorted(found)[:limit]


def fingerprint(canonical: Mapping[str, Any]) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def installer_error(text: str, limit: int = 30) -> str:
    """The installer's last lines (they name the package that failed), without blank noise."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-limit:]) or "the installer failed without a message"


def local_source(url: str) -> Path | None:
    """The host folder of a ``file://`` registry URL (tests, offline mirrors), else None."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.path))


def jail_url(url: str, mount: str) -> str:
    """``url`` as an install or exec jail sees it: a file:// folder appears at ``mount``."""
    return f"file://{mount}" if local_source(url) is not None else url.rstrip("/")
