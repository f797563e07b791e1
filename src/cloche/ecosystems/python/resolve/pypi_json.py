"""What PyPI's JSON API says about one project, read host side for the few long-tail imports an exec has, cached.

Two questions per project, each a small request or two: ``<pypi_json_url>/<name>/json`` (does it exist, when was
its first file uploaded, which wheel does the current release have) and the wheel's zip central directory (which
import names it ships, by range requests: see ``wheel_files``). Facts are trusted for ``FACTS_TTL`` seconds
(``MISSING_TTL`` for a 404, so a name published later is seen); a wheel's names never change, so they are kept
for as long as the cache is. When PyPI cannot be reached, a stale answer is used rather than none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cloche.ecosystems.facts_cache import MISSING_TTL, FactsCache, iso_epoch
from cloche.ecosystems.python.resolve.wheel_files import (
    ZipListingError,
    file_platform,
    http_member_names,
    import_names,
    pick_wheel,
)
from cloche.ecosystems.registry_http import RegistryHttp, Unavailable

FACTS_TTL = 24 * 3600.0
TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class PypiUnavailable(Unavailable):
    """PyPI could not be asked (or a wheel's listing could not be read)."""


@dataclass(frozen=True)
class ProjectFacts:
    name: str  # as PyPI spells it
    found: bool
    first_upload: float | None = None  # epoch seconds of the oldest file of any release
    version: str | None = None  # the current release
    wheel_url: str | None = None
    wheel_filename: str | None = None
    # The operating-system trove classifiers (and the Win32 / MacOS X environments) the project declares.
    platforms: tuple[str, ...] = ()
    # What the current release's files run on: "source" (an sdist), "any", "Linux", "Windows", "macOS".
    files_for: tuple[str, ...] = ()

    @classmethod
    def load(cls, data: dict[str, Any]) -> ProjectFacts:
        return cls(
            **{**data, "platforms": tuple(data.get("platforms") or ()), "files_for": tuple(data.get("files_for") or ())}
        )


_PLATFORM_CLASSIFIERS = ("Operating System ::", "Environment :: Win32", "Environment :: MacOS")


def distil(requested: str, document: dict[str, Any], url: str) -> ProjectFacts:
    """The facts of one ``/<name>/json`` document read from ``url`` (file URLs may be relative to it)."""
    info: dict[str, Any] = document["info"] if isinstance(document.get("info"), dict) else {}
    uploads = [
        t
        for files in (document.get("releases") or {}).values()
        if isinstance(files, list)
        for f in files
        if isinstance(f, dict) and (t := iso_epoch(f.get("upload_time_iso_8601") or f.get("upload_time"))) is not None
    ]
    current = [f for f in document.get("urls") or [] if isinstance(f, dict)]
    uploads += [t for f in current if (t := iso_epoch(f.get("upload_time_iso_8601") or f.get("upload_time")))]
    wheel = pick_wheel(current)
    declared = info.get("classifiers")
    classifiers: list[Any] = declared if isinstance(declared, list) else []
    return ProjectFacts(
        name=str(info.get("name") or requested),
        found=True,
        first_upload=min(uploads, default=None),
        version=str(info.get("version")) if info.get("version") else None,
        wheel_url=str(httpx.URL(url).join(str(wheel["url"]))) if wheel and wheel.get("url") else None,
        wheel_filename=str(wheel["filename"]) if wheel else None,
        platforms=tuple(str(c) for c in classifiers if str(c).startswith(_PLATFORM_CLASSIFIERS)),
        files_for=tuple(sorted({system for f in current if (system := file_platform(f)) is not None})),
    )


class PypiJson:
    """Reads and caches project facts and wheel listings from one PyPI JSON API (host side)."""

    def __init__(self, base_url: str, cache_dir: Path | None, *, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache = FactsCache(cache_dir, self.base_url)
        self.http = RegistryHttp(timeout=timeout, max_bytes=MAX_DOCUMENT_BYTES, unavailable=PypiUnavailable)

    def project(self, name: str) -> ProjectFacts:
        return self.cache.through(
            f"project:{name}",
            lambda: self._read(name),
            ttl=lambda facts: FACTS_TTL if facts.found else MISSING_TTL,
            load=ProjectFacts.load,
            dump=asdict,
            unavailable=PypiUnavailable,
        )

    def _read(self, name: str) -> ProjectFacts:
        document = self.http.document(f"{self.base_url}/{quote(name)}/json")
        if document is None:
            return ProjectFacts(name, found=False)
        return distil(name, document.data, document.url)

    def wheel_modules(self, url: str) -> frozenset[str]:
        """The import names the wheel at ``url`` ships (its bytes never change: cached without expiry)."""
        key = f"wheel:{url}"
        stored = self.cache.get(key)
        if stored is not None and isinstance(stored.data, list):
            return frozenset(stored.data)
        try:
            names = import_names(http_member_names(self.http.client(), url))
        except (httpx.HTTPError, ZipListingError) as e:
            raise PypiUnavailable(f"{url}: {e.__class__.__name__}: {e}") from e
        self.cache.put(key, sorted(names))
        return frozenset(names)

    def close(self) -> None:
        self.http.close()
