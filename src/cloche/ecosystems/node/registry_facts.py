"""What the npm registry says about a package, read host-side for the few names one exec needs, cached.

Two documents are read, both over plain HTTPS (never inside a jail: nothing here runs package code):

- ``<registry>/<name>/latest``: the newest release's manifest (a few KiB). Enough to check that the release
  ``*`` would install fits the code (exports, module type, engines).
- ``<registry>/<name>``: the full packument. Needed for a name off the popularity list (publish times,
  deprecation) and to find an older release when the newest does not fit. The abbreviated form npm itself
  uses has no publish times, so it cannot vouch.

Only the distilled facts are kept (``Release`` per version, no READMEs), one JSON file per document under
the facts cache folder, trusted for ``FACTS_TTL`` seconds (``MISSING_TTL`` for a 404, so a name published
later is seen). When the registry cannot be reached, a stale entry is used rather than none. A ``file://``
registry is a folder in the registry's URL layout (``<name>.json`` is ``<registry>/<name>``), read directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cloche.ecosystems.common import local_source
from cloche.ecosystems.facts_cache import MISSING_TTL, FactsCache, iso_epoch
from cloche.ecosystems.node.semver import Version
from cloche.ecosystems.registry_http import RegistryHttp, Unavailable

FACTS_TTL = 6 * 3600.0
TIMEOUT = 10.0
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


class RegistryUnavailable(Unavailable):
    """The npm registry could not be asked."""


@dataclass(frozen=True)
class Release:
    """One published version, as far as choosing it for a script needs."""

    version: str
    published: float | None = None  # epoch seconds
    deprecated: str | None = None
    module_type: str = "commonjs"  # the package.json "type"
    exports: Any = None  # the "exports" map as published (None: every file is reachable)
    main: str | None = None
    engines_node: str | None = None

    @classmethod
    def of(cls, manifest: Mapping[str, Any], published: float | None) -> Release:
        engines = manifest.get("engines")
        node = engines.get("node") if isinstance(engines, dict) else None
        deprecated = manifest.get("deprecated")
        return cls(
            version=str(manifest.get("version", "")),
            published=published,
            deprecated=deprecated if isinstance(deprecated, str) and deprecated else None,
            module_type="module" if manifest.get("type") == "module" else "commonjs",
            exports=manifest.get("exports"),
            main=manifest.get("main") if isinstance(manifest.get("main"), str) else None,
            engines_node=node if isinstance(node, str) else None,
        )


@dataclass(frozen=True)
class PackageFacts:
    """The registry's record of one package; ``releases`` newest first, prereleases left out."""

    name: str
    found: bool
    latest: str | None = None
    first_published: float | None = None
    last_published: float | None = None
    unpublished: bool = False
    releases: tuple[Release, ...] = ()

    @property
    def release_count(self) -> int:
        return len(self.releases)

    def release(self, version: str) -> Release | None:
        return next((r for r in self.releases if r.version == version), None)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def distil(name: str, packument: Mapping[str, Any]) -> PackageFacts:
    """The facts of a full packument (``GET <registry>/<name>``)."""
    times = _object(packument.get("time"))
    versions = _object(packument.get("versions"))
    tags = _object(packument.get("dist-tags"))
    if not versions:  # an unpublished package keeps only {"time": {"unpublished": ...}}
        return PackageFacts(name, found=True, unpublished="unpublished" in times)
    published = [t for k, v in times.items() if k not in ("created", "modified") and (t := iso_epoch(v)) is not None]
    created = iso_epoch(times.get("created"))
    releases = []
    for version, manifest in versions.items():
        parsed = Version.parse(version)
        if parsed is None or parsed.pre or not isinstance(manifest, dict):
            continue
        releases.append((parsed, Release.of({**manifest, "version": version}, iso_epoch(times.get(version)))))
    releases.sort(key=lambda r: r[0], reverse=True)
    latest = tags.get("latest") if isinstance(tags.get("latest"), str) else None
    return PackageFacts(
        name=name,
        found=True,
        latest=latest,
        first_published=min([t for t in (created, *published) if t is not None], default=None),
        last_published=max(published, default=None),
        releases=tuple(r for _, r in releases),
    )


def _from_json(data: Mapping[str, Any]) -> PackageFacts:
    releases = tuple(Release(**r) for r in data.get("releases", ()))
    return PackageFacts(**{**data, "releases": releases})


class RegistryFacts:
    """Reads and caches package facts from one npm registry (host side)."""

    def __init__(self, registry: str, cache_dir: Path | None, *, timeout: float = TIMEOUT) -> None:
        self.registry = registry.rstrip("/")
        self.folder = local_source(registry)
        self.cache = FactsCache(cache_dir, self.registry)
        self.http = RegistryHttp(
            timeout=timeout,
            max_bytes=MAX_DOCUMENT_BYTES,
            unavailable=RegistryUnavailable,
            missing=frozenset({404, 405}),  # 405: a registry without the /latest document
        )

    def packument(self, name: str) -> PackageFacts:
        """Everything about ``name`` (full packument); ``found=False`` when the registry does not know it."""
        return self._cached(name, latest=False)

    def latest(self, name: str) -> Release | None:
        """The release ``latest`` points at (small document), or None when the registry does not know it."""
        facts = self._cached(name, latest=True)
        return facts.releases[0] if facts.found and facts.releases else None

    def _read(self, name: str, *, latest: bool) -> PackageFacts:
        document = self._document(name, latest)
        if document is None:
            return PackageFacts(name, found=False)
        if latest:
            if self.folder is not None:  # a folder registry has no /latest: take it from the packument
                facts = distil(name, document)
                release = facts.release(facts.latest or "")
                return PackageFacts(name, True, facts.latest, releases=(release,) if release else ())
            return PackageFacts(name, True, str(document.get("version")), releases=(Release.of(document, None),))
        return distil(name, document)

    def _document(self, name: str, latest: bool) -> dict[str, Any] | None:
        if self.folder is not None:
            path = self.folder / f"{name}.json"
            if not path.is_file():
                return None
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
        url = f"{self.registry}/{quote(name, safe='@')}" + ("/latest" if latest else "")
        document = self.http.document(url)
        return document.data if document is not None else None

    def _cached(self, name: str, *, latest: bool) -> PackageFacts:
        return self.cache.through(
            f"{'latest' if latest else 'packument'}:{name}",
            lambda: self._read(name, latest=latest),
            ttl=lambda facts: FACTS_TTL if facts.found else MISSING_TTL,
            load=_from_json,
            dump=asdict,
            unavailable=RegistryUnavailable,
        )
