"""A host-side cache of what a registry said, one small JSON file per question, trusted for a time to live.

Registry answers decide whether cloche vouches for a package, so they are read by the server (never by a jail)
and kept under the data dir's ``facts/<ecosystem>/`` (``DataPaths.registry_facts``). Files are written to a
temporary name and renamed, so threads of one server never read half a file; an unreadable or older-format
file counts as absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

FORMAT = 1
MISSING_TTL = 600.0  # how long "no such name" is trusted: a name published later is seen soon
T = TypeVar("T")


def iso_epoch(text: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time as registries write them ("...Z"), or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Cached:
    fetched: float  # epoch seconds
    data: Any

    def fresh(self, ttl: float, now: float | None = None) -> bool:
        return ((time.time() if now is None else now) - self.fetched) < ttl


class FactsCache:
    """``get``/``put`` JSON values by key under ``folder`` (None: a cache that keeps nothing)."""

    def __init__(self, folder: Path | None, namespace: str) -> None:
        self.folder = folder
        self.namespace = namespace  # e.g. the registry's URL: the same key from two registries never collides

    def _path(self, key: str) -> Path | None:
        if self.folder is None:
            return None
        digest = hashlib.sha256(f"{self.namespace}\n{key}".encode()).hexdigest()
        return self.folder / f"{digest}.json"

    def get(self, key: str) -> Cached | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("format") != FORMAT or stored.get("key") != key:
                return None
            return Cached(float(stored["fetched"]), stored["data"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, key: str, data: Any, fetched: float | None = None) -> None:
        path = self._path(key)
        if path is None:
            return
        assert self.folder is not None
        for folder in (self.folder.parent, self.folder):  # facts/ and facts/<ecosystem>/, private to the server
            folder.mkdir(mode=0o700, exist_ok=True)
        record = {"format": FORMAT, "key": key, "fetched": time.time() if fetched is None else fetched, "data": data}
        temp = path.with_suffix(f".{secrets.token_hex(6)}.tmp")
        temp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temp, path)

    def through(
        self,
        key: str,
        read: Callable[[], T],
        *,
        ttl: Callable[[T], float],
        load: Callable[[Any], T],
        dump: Callable[[T], Any],
        unavailable: type[Exception],
    ) -> T:
        """The cached answer while ``ttl`` of it holds, else ``read()`` (then cached); when the registry is
        ``unavailable``, a stale answer beats none."""
        stored = self.get(key)
        known: T | None = None
        if stored is not None:
            try:
                known = load(stored.data)
            except (KeyError, TypeError, ValueError):  # an older shape of the same record: absent
                known = None
        if stored is not None and known is not None and stored.fresh(ttl(known)):
            return known
        try:
            value = read()
        except unavailable:
            if known is not None:
                return known
            raise
        self.put(key, dump(value))
        return value
