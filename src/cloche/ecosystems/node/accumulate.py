"""A sandbox's Node needs from several sources at once: entry points that ran and packages typed in
``npm install``. Requirement strings are ``name@spec`` (a bare name means any version)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cloche.ecosystems.base import Accumulates, Detection, Needs
from cloche.ecosystems.node.detect import NodeDetection
from cloche.ecosystems.node.lockfile import root_manifest
from cloche.errors import InvalidRequest

# npm's package name rules: lower case, URL-safe, an optional @scope/.
_NAME = re.compile(r"(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*")


def split(requirement: str) -> tuple[str, str]:
    """("@scope/pkg", "^1.2") for "@scope/pkg@^1.2"; ("x", "*") for "x"."""
    at = requirement.find("@", 1)
    return (requirement, "*") if at < 0 else (requirement[:at], requirement[at + 1 :] or "*")


def needs_of(detection: Detection) -> Needs:
    return Needs(detection.requested)


def combine(base: Detection | None, extra: Needs) -> Detection:
    """The base's manifest (and lock: npm keeps its pins and adds the rest) with ``extra`` added."""
    found = base.details if base is not None and isinstance(base.details, NodeDetection) else NodeDetection("none")
    manifest = dict(found.manifest_json)
    dependencies = dict(manifest.get("dependencies") or {})
    declared = {name for field in ("dependencies", "devDependencies", "optionalDependencies") for name in
                (manifest.get(field) or {})}  # fmt: skip
    for requirement in extra.requirements:
        name, spec = split(requirement)
        if name not in declared:
            dependencies[name] = spec
    manifest = root_manifest({**manifest, "dependencies": dependencies})
    requested = tuple(dict.fromkeys((*(base.requested if base is not None else ()), *extra.requirements)))
    combined = replace(found, source="sandbox", manifest_json=manifest, requested=requested)
    return Detection(
        ecosystem="node",
        source="sandbox",
        requested=requested,
        fingerprint=combined.fingerprint,
        details=combined,
    )


def declare(current: Needs, names: Sequence[str], remove: bool) -> Needs:
    """``current`` after ``npm install names`` (or removal): one entry per package, the latest typed one winning."""
    lines = {split(r)[0]: r for r in current.requirements}
    for requirement in names:
        name, _ = split(requirement)
        if not _NAME.fullmatch(name):
            raise InvalidRequest(f"npm install {requirement}: {name!r} is not an npm package name")
        lines.pop(name, None)
        if not remove:
            lines[name] = requirement
    return Needs(tuple(lines.values()))


class NodeNeeds(Accumulates):
    def needs(self, detection: Detection) -> Needs:
        return needs_of(detection)

    def combine(self, base: Detection | None, extra: Needs) -> Detection:
        return combine(base, extra)

    def package(self, requirement: str) -> str:
        return split(requirement)[0]

    def declare(self, current: Needs, root: Path, names: Sequence[str], files: Sequence[str], remove: bool) -> Needs:
        return declare(current, names, remove)
