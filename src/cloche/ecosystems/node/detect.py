"""What a Node entry needs installed, decided from the workspace alone.

1. A ``package.json`` in the entry's folder or a parent (up to the workspace root): its
   dependencies, devDependencies and optionalDependencies are installed, pinned by a
   ``package-lock.json`` beside it when there is one. Imported packages it does not declare are
   reported as ``unlisted``, not installed.
2. Otherwise the import scan: a package is installed only when it is on the shipped popularity list
   (``data/npm_popular.txt``), because a model's invented name is exactly what slopsquatters
   register. Everything else is reported as ``unresolved``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cloche.ecosystems.common import find_up, fingerprint, join, present, read_text, sha256_text
from cloche.ecosystems.node.lockfile import DEPENDENCY_FIELDS, ROOT_FIELDS, root_manifest
from cloche.ecosystems.node.scan import DATA, NodeScan, scan
from cloche.errors import InvalidRequest, Unsupported
from cloche.store import safefs

DETECTION_FORMAT_VERSION = 1
INSTALLED_FIELDS = ("dependencies", "devDependencies", "optionalDependencies")
# Specs the install jail cannot honour: it sees no workspace and reaches only the registry.
_REFUSED_PREFIXES = ("file:", "link:", "portal:", "workspace:", "git", "http:", "https:", "github:")


@cache
def popular() -> frozenset[str]:
    lines = (DATA / "npm_popular.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def unresolved_hint(name: str) -> str:
    return (
        f"{name!r} is not among the most downloaded npm packages, so cloche will not guess it; "
        "add it to package.json if you trust it"
    )


@dataclass(frozen=True)
class NodeDetection:
    source: str  # "package.json", "scan" or "none"
    manifest: str | None = None  # workspace path of package.json
    manifest_json: dict[str, Any] = field(default_factory=dict)  # what cloche installs from
    lock: str | None = None  # the workspace's package-lock.json text, when present
    requested: tuple[str, ...] = ()
    guessed: tuple[str, ...] = ()  # scan only: names installed because the popularity list vouches for them
    unlisted: tuple[dict[str, str | None], ...] = ()
    unresolved: tuple[dict[str, str | None], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            {
                "format": DETECTION_FORMAT_VERSION,
                "source": self.source,
                "manifest": self.manifest_json,
                "lock": sha256_text(self.lock) if self.lock is not None else None,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "manifest": self.manifest,
            "requested": list(self.requested),
            "guessed": list(self.guessed),
            "lock": self.lock is not None,
            "unlisted": list(self.unlisted),
            "unresolved": list(self.unresolved),
            "warnings": list(self.warnings),
        }


def _declared(manifest: dict[str, Any], where: str) -> dict[str, str]:
    declared: dict[str, str] = {}
    for key in ROOT_FIELDS:
        value = manifest.get(key)
        if value is not None and not isinstance(value, dict):
            raise InvalidRequest(f"{where}: {key!r} must be an object")
    for key in DEPENDENCY_FIELDS:
        for name, spec in (manifest.get(key) or {}).items():
            if not isinstance(spec, str):
                raise InvalidRequest(f"{where}: {key}.{name} must be a version string")
            if key in INSTALLED_FIELDS and spec.strip().lower().startswith(_REFUSED_PREFIXES):
                raise Unsupported(
                    f"{where}: {key}.{name} is {spec!r}; cloche installs only from the npm registry "
                    "(the install jail sees no workspace, git host or URL): name a released version"
                )
            declared.setdefault(name, spec)
    return declared


def _from_manifest(root: Path, base: str, found: NodeScan) -> NodeDetection:
    where = join(base, "package.json")
    try:
        manifest = json.loads(read_text(root, where))
    except ValueError as e:
        raise InvalidRequest(f"{where} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise InvalidRequest(f"{where} must hold a JSON object")
    declared = _declared(manifest, where)
    lock_rel = join(base, "package-lock.json")
    lock = read_text(root, lock_rel) if present(root, lock_rel) else None
    installed = {n: s for key in INSTALLED_FIELDS for n, s in (manifest.get(key) or {}).items()}
    own = manifest.get("name")
    unlisted = tuple(
        {"module": s.specifier, "suggested": s.package if s.package in popular() else None}
        for s in found.packages
        if s.package not in declared and s.package != own
    )
    return NodeDetection(
        source="package.json",
        manifest=where,
        manifest_json=root_manifest(manifest) if installed else {},
        lock=lock if installed else None,
        requested=tuple(f"{name}@{spec}" for name, spec in sorted(installed.items())),
        unlisted=unlisted,
        warnings=found.warnings,
    )


def _from_scan(found: NodeScan) -> NodeDetection:
    names = found.names()
    guessed = tuple(n for n in names if n in popular())
    unknown = [s for s in found.packages if s.package not in popular()]
    unresolved: tuple[dict[str, str | None], ...] = tuple(
        {"module": s.specifier, "hint": unresolved_hint(s.package)} for s in unknown
    )
    manifest = root_manifest({"dependencies": dict.fromkeys(guessed, "*")}) if guessed else {}
    return NodeDetection(
        source="scan" if names else "none",
        manifest_json=manifest,
        requested=guessed,
        guessed=guessed,
        unresolved=unresolved,
        warnings=found.warnings,
    )


def detect(root: Path, entry: str) -> NodeDetection:
    entry = str(safefs.validate_relpath(entry))
    found = scan(root, entry)
    manifest = find_up(root, entry, ("package.json",))
    if manifest is not None:
        return _from_manifest(root, manifest[0], found)
    return _from_scan(found)
