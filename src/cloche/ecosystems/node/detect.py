"""What a Node entry needs installed, decided from the workspace alone.

1. A ``package.json`` in the entry's folder or a parent (up to the workspace root): its
   dependencies, devDependencies and optionalDependencies are installed, pinned by a
   ``package-lock.json`` beside it when there is one. Imported packages it does not declare are
   reported as ``unlisted``, not installed.
2. Otherwise the import scan: a package is installed only when something vouches for it (vetting.py:
   the shipped popularity list, or the registry's facts about an established package), because a
   model's invented name is exactly what slopsquatters register; the release is the newest that fits
   the code. Everything else is reported as ``unresolved``, with the reason. Without a ``Vetting``
   (offline tools, golden tests) only the popularity list vouches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cloche.ecosystems.common import detection_fingerprint, find_up, join, present, read_text, sha256_text, shown_fields
from cloche.ecosystems.node.lockfile import DEPENDENCY_FIELDS, ROOT_FIELDS, root_manifest
from cloche.ecosystems.node.release_fit import Usage
from cloche.ecosystems.node.scan import DATA, NodeScan, scan
from cloche.ecosystems.node.vetting import Choice, Vetting
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


@dataclass(frozen=True)
class NodeDetection:
    source: str  # "package.json", "scan" or "none"
    manifest: str | None = None  # workspace path of package.json
    manifest_json: dict[str, Any] = field(default_factory=dict)  # what cloche installs from
    lock: str | None = None  # the workspace's package-lock.json text, when present
    requested: tuple[str, ...] = ()
    guessed: tuple[str, ...] = ()  # scan only: names installed because something vouches for them
    resolved: tuple[dict[str, str | None], ...] = ()  # scan only: per package, the release, source and reason
    usages: tuple[Usage, ...] = ()  # scan only: how the code uses each installed package (checked after install)
    unlisted: tuple[dict[str, str | None], ...] = ()
    unresolved: tuple[dict[str, str | None], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        inputs = {"manifest": self.manifest_json, "lock": sha256_text(self.lock) if self.lock is not None else None}
        return detection_fingerprint(DETECTION_FORMAT_VERSION, self.source, inputs)

    def to_dict(self) -> dict[str, Any]:
        names = ("source", "manifest", "requested", "guessed", "resolved", "unlisted", "unresolved", "warnings")
        return shown_fields(self, names) | {"lock": self.lock is not None}


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


def _from_scan(found: NodeScan, vetting: Vetting) -> NodeDetection:
    choices, refusals = vetting.decide(found.usages)
    choices.sort(key=lambda c: c.package)
    refused: tuple[dict[str, str | None], ...] = tuple({"module": r.specifier, "hint": r.hint()} for r in refusals)
    unresolved = refused + found.no_such_builtin
    dependencies = {c.package: c.requirement for c in choices}
    return NodeDetection(
        source="scan" if found.packages else "none",
        manifest_json=root_manifest({"dependencies": dependencies}) if dependencies else {},
        requested=tuple(_requirement(c) for c in choices),
        guessed=tuple(c.package for c in choices),
        resolved=tuple(c.to_dict() for c in choices),
        usages=tuple(u for u in found.usages if u.package in dependencies),
        unresolved=unresolved,
        warnings=found.warnings,
    )


def _requirement(choice: Choice) -> str:
    return choice.package if choice.requirement == "*" else f"{choice.package}@{choice.requirement}"


def offline_vetting() -> Vetting:
    """Only the popularity list vouches; no release checks (no registry facts to decide from)."""
    return Vetting(None, popular, None)


def detect(root: Path, entry: str, vetting: Vetting | None = None) -> NodeDetection:
    entry = str(safefs.validate_relpath(entry))
    found = scan(root, entry)
    manifest = find_up(root, entry, ("package.json",))
    if manifest is not None:
        return _from_manifest(root, manifest[0], found)
    return _from_scan(found, vetting or offline_vetting())
