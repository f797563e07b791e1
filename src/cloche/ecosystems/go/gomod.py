"""Reading Go sources and module files: import paths, go.mod requirements, go.sum, module licenses.

Only what cloche decides with is parsed; the go command itself reads the files again in the jail.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cloche.ecosystems.base import Component
from cloche.ecosystems.common import strip_comments
from cloche.errors import ClocheError
from cloche.store import safefs

_BLOCK = re.compile(r"\bimport\s*\(([^)]*)\)")
_SINGLE = re.compile(r"\bimport\s+(?:[\w.]+\s+)?\"([^\"\n]+)\"")
_IN_BLOCK = re.compile(r"(?:^|\n)\s*(?:[\w.]+\s+)?\"([^\"\n]+)\"")
_MODULE = re.compile(r"^\s*module\s+\"?([^\s\"]+)\"?", re.MULTILINE)
_GO = re.compile(r"^\s*go\s+([0-9][0-9.a-z]*)\s*$", re.MULTILINE)
_REQ = re.compile(r"^\s*(?:require\s+)?\"?([^\s\"()]+)\"?\s+(v[^\s/]+)(\s*//\s*indirect)?\s*$")
_REPLACE_LOCAL = re.compile(r"=>\s*(\.{1,2}/|/)")
MAX_LICENSE = 256 * 1024
LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING", "LICENSE-MIT", "LICENSE.MIT")


def imports(source: str) -> list[str]:
    """Import paths of one Go file (comments blanked first); the file's own package clause is ignored."""
    code = strip_comments(source)
    found = [m.group(1) for m in _SINGLE.finditer(code)]
    for block in _BLOCK.finditer(code):
        found += [m.group(1) for m in _IN_BLOCK.finditer(block.group(1))]
    return sorted(set(found))


def is_standard(path: str) -> bool:
    """Go's rule of thumb: standard-library paths have no dot in their first element (``C`` is cgo)."""
    first = path.split("/", 1)[0]
    return "." not in first


@dataclass(frozen=True)
class Requirement:
    path: str
    version: str
    indirect: bool


@dataclass(frozen=True)
class GoMod:
    module: str | None
    go: str | None
    requires: tuple[Requirement, ...]
    local_replace: bool  # a replace pointing at a folder: the install jail cannot see it


def parse_gomod(text: str) -> GoMod:
    module = _MODULE.search(text)
    go = _GO.search(text)
    requires: list[Requirement] = []
    in_block = False
    for raw in text.splitlines():
        line = raw.split("//", 1)[0] + ("// indirect" if "// indirect" in raw else "")
        stripped = line.strip()
        if stripped.startswith("require") and stripped.endswith("("):
            in_block = True
            continue
        if in_block and stripped.startswith(")"):
            in_block = False
            continue
        if in_block or stripped.startswith("require "):
            m = _REQ.match(line)
            if m:
                requires.append(Requirement(m.group(1), m.group(2), bool(m.group(3))))
    return GoMod(
        module=module.group(1) if module else None,
        go=go.group(1) if go else None,
        requires=tuple(requires),
        local_replace=bool(_REPLACE_LOCAL.search(text)),
    )


def covered(path: str, modules: list[str]) -> str | None:
    """The module (longest path) that provides package ``path``, or None."""
    best = None
    for module in modules:
        if (path == module or path.startswith(module + "/")) and (best is None or len(module) > len(best)):
            best = module
    return best


def escape_path(path: str) -> str:
    """The module cache's case encoding: an upper-case letter becomes '!' and its lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def purl(path: str, version: str) -> str:
    namespace, _, name = path.rpartition("/")
    ns = "/".join(quote(part, safe="") for part in namespace.split("/")) if namespace else ""
    return f"pkg:golang/{ns + '/' if ns else ''}{quote(name, safe='')}@{quote(version, safe='')}"


def guess_license(text: str) -> str | None:
    """SPDX id for the common license texts (only the unmistakable ones; anything else stays unknown)."""
    flat = " ".join(text.split())
    if "Permission is hereby granted, free of charge" in flat:
        return "MIT"
    if "Apache License" in flat and "Version 2.0" in flat:
        return "Apache-2.0"
    if "Mozilla Public License Version 2.0" in flat or "Mozilla Public License, version 2.0" in flat:
        return "MPL-2.0"
    if "Redistribution and use in source and binary forms" in flat:
        return "BSD-3-Clause" if "Neither the name" in flat or "names of its" in flat else "BSD-2-Clause"
    if "Permission to use, copy, modify, and/or distribute this software" in flat:
        return "ISC"
    return None


def module_license(modcache: Path | None, path: str, version: str) -> str | None:
    if modcache is None:
        return None
    folder = f"{escape_path(path)}@{version}"
    for name in LICENSE_FILES:
        try:
            data = safefs.read_file(modcache, f"{folder}/{name}", max_bytes=MAX_LICENSE)
        except (ClocheError, OSError):
            continue
        return guess_license(data.decode("utf-8", errors="replace"))
    return None


def components(lock_text: str, provenance: str, modcache: Path | None = None) -> list[Component]:
    """Every module the tidied go.mod requires (Go 1.17+ lists indirect ones too), with its license when the
    environment's module cache is given. go.sum's h1: hashes are not file digests, so none are reported."""
    lock = json.loads(lock_text)
    out = []
    for req in parse_gomod(lock["go.mod"]).requires:
        out.append(
            Component(
                name=req.path,
                version=req.version,
                purl=purl(req.path, req.version),
                license=module_license(modcache, req.path, req.version),
                provenance=provenance,
            )
        )
    return out
