"""npm's package-lock.json (lockfile v2/v3): normalised into cloche's lock text, read back as components.

The lock text is what the environment key hashes, so it keeps only what decides the installed tree:
the ``packages`` map (paths, versions, resolved URLs, integrity, flags) and the root entry's dependency
fields. The root's name and version are replaced, so two projects declaring the same dependencies
share one environment.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cloche.ecosystems.base import Component, InstallFailed
from cloche.errors import ClocheError
from cloche.store import safefs

ROOT_NAME = "sandbox"
DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
ROOT_FIELDS = (*DEPENDENCY_FIELDS, "overrides")
# What the build host is, in npm's terms: packages restricted to other platforms are never installed.
NPM_OS, NPM_CPU = "linux", "x64"
MAX_PACKAGE_JSON = 1024 * 1024


def root_manifest(fields: dict[str, Any]) -> dict[str, Any]:
    """The package.json cloche installs from: only dependency fields, under a fixed name."""
    manifest: dict[str, Any] = {"name": ROOT_NAME, "version": "0.0.0", "private": True}
    manifest.update({key: fields[key] for key in ROOT_FIELDS if fields.get(key)})
    return manifest


def normalise(text: str) -> str:
    """cloche's lock text for npm's package-lock.json ``text``; InstallFailed if it is not one."""
    try:
        lock = json.loads(text)
        packages = lock["packages"]
        version = int(lock.get("lockfileVersion", 0))
    except (ValueError, KeyError, TypeError) as e:
        raise InstallFailed(f"npm did not produce a usable package-lock.json: {e}") from e
    if version < 2 or not isinstance(packages, dict):
        raise InstallFailed(f"package-lock.json version {version} is too old; npm 7 or later writes version 3")
    root = packages.get("", {})
    out = {"": {"name": ROOT_NAME, "version": "0.0.0", **{k: root[k] for k in ROOT_FIELDS if root.get(k)}}}
    for path in sorted(p for p in packages if p):
        entry = packages[path]
        if not isinstance(entry, dict) or entry.get("link"):
            raise InstallFailed(f"package-lock.json: {path} is a link to a local folder, which cloche cannot install")
        out[path] = entry
    normalised = {"name": ROOT_NAME, "version": "0.0.0", "lockfileVersion": 3, "requires": True, "packages": out}
    return json.dumps(normalised, indent=2, sort_keys=True) + "\n"


def manifest_of(lock_text: str) -> str:
    """The package.json that matches a normalised lock (npm ci refuses a mismatch)."""
    root = json.loads(lock_text)["packages"][""]
    return json.dumps(root_manifest(root), indent=2, sort_keys=True) + "\n"


def top_level_version(lock_text: str, name: str) -> str | None:
    """The version of ``name`` installed at the top of node_modules (what ``require(name)`` loads)."""
    entry = json.loads(lock_text)["packages"].get(f"node_modules/{name}")
    version = entry.get("version") if isinstance(entry, dict) else None
    return version if isinstance(version, str) else None


def runs_scripts(lock_text: str) -> bool:
    """True when a package in the lock has install scripts (npm records ``hasInstallScript``)."""
    packages = json.loads(lock_text)["packages"]
    return any(isinstance(e, dict) and e.get("hasInstallScript") for p, e in packages.items() if p)


def _platform_ok(entry: dict[str, Any]) -> bool:
    def allowed(values: Any, ours: str) -> bool:
        if not isinstance(values, list) or not values:
            return True
        if f"!{ours}" in values:
            return False
        positive = [v for v in values if not str(v).startswith("!")]
        return not positive or ours in positive

    return allowed(entry.get("os"), NPM_OS) and allowed(entry.get("cpu"), NPM_CPU)


def purl(name: str, version: str) -> str:
    # The purl spec encodes the scope's '@' as %40 and keeps the '/' between scope and name.
    if name.startswith("@"):
        scope, _, bare = name.partition("/")
        return f"pkg:npm/{quote(scope)}/{quote(bare)}@{quote(version)}"
    return f"pkg:npm/{quote(name)}@{quote(version)}"


def _hashes(integrity: Any) -> tuple[str, ...]:
    """npm's SRI strings (``sha512-<base64>``) as cloche's ``algorithm:hex``."""
    out = []
    for item in str(integrity or "").split():
        algorithm, _, digest = item.partition("-")
        try:
            out.append(f"{algorithm}:{base64.b64decode(digest, validate=True).hex()}")
        except ValueError:
            continue
    return tuple(out)


def _installed_license(node_modules: Path | None, path: str) -> str | None:
    if node_modules is None:
        return None
    try:
        data = json.loads(safefs.read_file(node_modules, f"{path}/package.json", max_bytes=MAX_PACKAGE_JSON))
    except (ClocheError, OSError, ValueError):
        return None
    value = data.get("license") if isinstance(data, dict) else None
    if isinstance(value, dict):  # the old {"type": "MIT", "url": ...} form
        value = value.get("type")
    return value if isinstance(value, str) and value else None


def components(lock_text: str, provenance: str, node_modules: Path | None = None) -> list[Component]:
    """One component per installed (name, version), in lock order; licenses from the lock, else from the
    installed package.json when ``node_modules`` (the environment's) is given."""
    packages = json.loads(lock_text)["packages"]
    out: dict[tuple[str, str], Component] = {}
    for path, entry in packages.items():
        if not path or not isinstance(entry, dict) or not _platform_ok(entry):
            continue
        name = entry.get("name") or path.rsplit("node_modules/", 1)[-1]
        version = entry.get("version")
        if not isinstance(version, str) or (name, version) in out:
            continue
        license_ = entry.get("license") if isinstance(entry.get("license"), str) else None
        if license_ is None:
            license_ = _installed_license(node_modules, path.removeprefix("node_modules/"))
        out[(name, version)] = Component(
            name=name,
            version=version,
            purl=purl(name, version),
            license=license_,
            hashes=_hashes(entry.get("integrity")),
            provenance=provenance,
        )
    return list(out.values())
