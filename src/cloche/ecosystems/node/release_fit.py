"""Does a release fit the code that imports it? Decided from the registry's facts, before anything installs.

A release does not fit when Node would refuse what the script does with it:

- a subpath the release's ``exports`` map does not export (``ERR_PACKAGE_PATH_NOT_EXPORTED``), for the
  conditions of how it is loaded (``require`` or ``import``);
- ``require()`` of a release that is an ES module only. Node 20.19+ can load such a module from CommonJS,
  but hands back its namespace object, not the ``module.exports`` CommonJS code was written against
  (``require('chalk').red`` is undefined); older Node throws ``ERR_REQUIRE_ESM``. Either way the code was
  written for a release that shipped CommonJS;
- an ``engines.node`` range the jail's Node does not satisfy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloche.ecosystems.node.registry_facts import Release
from cloche.ecosystems.node.semver import Version, parse_range, satisfies

NODE_HEADER = Path("/usr/include/node/node_version.h")
_HEADER_FIELD = re.compile(r"#define NODE_(MAJOR|MINOR|PATCH|MODULE)_VERSION (\d+)")
REQUIRE_CONDITIONS = ("node", "require", "node-addons", "default")
IMPORT_CONDITIONS = ("node", "import", "node-addons", "default")


def node_header_fields(header: Path = NODE_HEADER) -> dict[str, str]:
    """MAJOR, MINOR, PATCH and MODULE of the Node the jails run (its headers; ecosystems never spawn)."""
    try:
        return dict(_HEADER_FIELD.findall(header.read_text()))
    except OSError:
        return {}


def node_version(header: Path = NODE_HEADER) -> Version | None:
    found = node_header_fields(header)
    try:
        return Version(int(found["MAJOR"]), int(found["MINOR"]), int(found["PATCH"]))
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Usage:
    """How an entry uses one package: the subpaths it names and whether CommonJS ``require``s it."""

    package: str
    specifier: str  # the first specifier naming it, as written
    subpaths: tuple[str, ...] = ()  # "./fp" for "lodash/fp"; the package itself is "."
    required: bool = False  # named in a require() call (CommonJS)
    names: tuple[tuple[str, str], ...] = ()  # (subpath, export name) static imports ask for ("default", "x")


Resolved = tuple[str, tuple[str, ...]]  # (file, the conditions taken to reach it)


def _conditional(target: Any, conditions: Sequence[str], via: tuple[str, ...] = ()) -> Resolved | None:
    """The file a conditional exports target resolves to, as Node walks it (object order, first match), and
    the conditions taken on the way."""
    if isinstance(target, str):
        return target, via
    if isinstance(target, list):
        for item in target:
            found = _conditional(item, conditions, via)
            if found is not None:
                return found
        return None
    if isinstance(target, dict):
        for key, value in target.items():
            if key in conditions:
                found = _conditional(value, conditions, (*via, key))
                if found is not None:
                    return found
    return None


def _subpath_target(exports: Any, subpath: str, conditions: Sequence[str]) -> Resolved | None:
    """The file ``subpath`` ("." or "./x") resolves to through ``exports`` (with the conditions taken); None
    when it is not exported."""
    is_map = isinstance(exports, dict) and any(str(k).startswith(".") for k in exports)
    if not is_map:  # sugar: the whole value is the target of "."
        return _conditional(exports, conditions) if subpath == "." else None
    assert isinstance(exports, dict)
    if subpath in exports:
        return _conditional(exports[subpath], conditions)
    best: tuple[int, str] | None = None  # Node takes the pattern with the longest prefix
    for key in exports:
        if "*" in key:
            prefix, _, suffix = key.partition("*")
            matches = subpath.startswith(prefix) and subpath.endswith(suffix) and len(subpath) > len(prefix + suffix)
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), key)
        elif key.endswith("/") and subpath.startswith(key) and (best is None or len(key) > best[0]):
            best = (len(key), key)  # the old folder mapping "./lib/"
    if best is None:
        return None
    return _conditional(exports[best[1]], conditions)


def _is_esm(path: str, via: tuple[str, ...], release: Release) -> bool:
    if "require" in via:
        return False  # a target named for require() is CommonJS (a nested package.json may say so)
    if path.endswith(".mjs"):
        return True
    if path.endswith((".cjs", ".json", ".node")):
        return False
    return release.module_type == "module"


def misfits(release: Release, usage: Usage, node: Version | None) -> list[str]:
    """Why ``release`` does not fit ``usage`` on ``node`` (empty: it fits)."""
    why: list[str] = []
    engines = release.engines_node
    if node is not None and engines and parse_range(engines) is not None and not satisfies(node, engines):
        why.append(f"needs Node {engines} (the sandbox has {node})")
    conditions = REQUIRE_CONDITIONS if usage.required else IMPORT_CONDITIONS
    for subpath in usage.subpaths or (".",):
        via: tuple[str, ...] = ()
        if release.exports is not None:
            found = _subpath_target(release.exports, subpath, conditions)
            if found is None:
                how = "require" if usage.required else "import"
                why.append(f"does not export {subpath!r} to {how}")
                continue
            target, via = found
        elif subpath == ".":
            target = release.main or "index.js"
        else:
            continue  # no exports map: every file is reachable; whether it exists is not in the facts
        if usage.required and _is_esm(target, via, release):
            why.append(f"is an ES module only ({subpath!r} -> {target}); this code require()s it")
    return why


def describe(tried: Mapping[str, list[str]]) -> list[str]:
    """Back-off steps, one per run of consecutive releases refused for the same reason."""
    steps: list[str] = []
    run: list[str] = []
    reason = ""
    for version, why in [*tried.items(), ("", [])]:
        text = "; ".join(why)
        if run and text != reason:
            span = run[0] if len(run) == 1 else f"{run[0]} .. {run[-1]} ({len(run)} releases)"
            steps.append(f"{span}: {reason}")
            run = []
        if version:
            run.append(version)
            reason = text
    return steps
