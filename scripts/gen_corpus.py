#!/usr/bin/env python3
"""Build the evaluation corpora of real manifest-less scripts: their imports only, never their code.

The bench (``python -m bench --only corpus``) measures how often a real script written by someone else, run with
no manifest, gets every import it makes satisfied. This script reads public repositories of scripts, examples and
demos (listed with pinned commits in ``bench/corpus/sources.toml``), picks the scripts by fixed rules, and writes
``bench/corpus/python.json`` and ``bench/corpus/node.json``: per script its repository, commit, path, the
repository's licence, and the imports it makes (module or specifier, the names of ``from x import a, b`` or of
``import {a, b} from 'x'``, and whether the import is guarded by ``try``). No line of the scripts is kept.

Selection rules (the same for every repository; nothing depends on how cloche handles a script):

- the file is under one of the source's ``include`` folders, not in a test, vendored, built or static-assets folder,
  not a test, setup, ``__init__`` or minified file;
- no manifest in its folder or a folder above it, the repository root excepted (``requirements*.txt``,
  ``pyproject.toml``, ``setup.py``, ``setup.cfg``, ``Pipfile``, ``environment.yml`` for Python; ``package.json``
  for Node): the script belongs to no project that declares its needs;
- Python: it parses as Python 3 and runs something when executed (an ``if __name__ == "__main__":`` block or a
  top-level call, loop or ``with``: not a module of a larger program); it imports no desktop toolkit of the
  standard library (``tkinter``, ``turtle``: they need a display and the host's Tk, not packages);
  Node: it is no browser code (no ``document.``/``window.``);
- it imports at least one third-party module: Python, a top-level name that is neither in the standard library of
  this interpreter nor a module or folder beside the script or in a folder above it (at the repository root only
  when the source is not ``root_is_package``: a repository that publishes the package at its root has examples
  that import the published release); Node, a bare specifier that is not a built-in;
- of the eligible scripts, the first ``cap`` in the order of sha256("owner/name:path") are kept.

Each repository must be available as a git directory at ``MIRRORS/owner+name/repo`` or ``MIRRORS/owner+name``
(for example ``git clone --mirror URL MIRRORS/owner+name``); the pinned commit is read with ``git show``.

    python scripts/gen_corpus.py --mirrors /path/to/mirrors
    python scripts/gen_corpus.py --mirrors DIR --check      # exit 1 when the written corpora differ
"""

from __future__ import annotations

import argparse
import ast
import bisect
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "corpus"
SOURCES = CORPUS / "sources.toml"
FORMAT = 1

PY_MANIFESTS = re.compile(
    r"^(requirements[\w.-]*\.txt|pyproject\.toml|setup\.py|setup\.cfg|Pipfile|environment\.ya?ml)$", re.I
)
# Tests, vendored code, and built or bundled output (a generated site's assets are no one's script).
SKIPPED_DIRS = {"test", "tests", "testing", "__tests__", "node_modules", "vendor", "third_party", "site-packages"}
SKIPPED_DIRS |= {"dist", "build", "site", "assets", "static", "public"}
PY_SKIPPED_FILES = re.compile(r"^(test_.*|.*_test|conftest|setup|__init__|__main__|noxfile|conf)\.py$")
JS_SKIPPED_FILES = re.compile(r"(^tests?\.[cm]?js|\.min\.js|\.test\.[cm]?js|\.spec\.[cm]?js|\.config\.[cm]?js)$")
GUI_STDLIB = {"tkinter", "turtle", "turtledemo", "idlelib"}
LICENCE_FILES = re.compile(r"^(licen[cs]e|copying)(\.(md|txt|rst))?$", re.I)
# The first phrase found in a licence file names it (SPDX ids).
LICENCE_PHRASES = (
    ("Apache License", "Apache-2.0"),
    ("GNU AFFERO GENERAL PUBLIC LICENSE", "AGPL-3.0"),
    ("GNU LESSER GENERAL PUBLIC LICENSE", "LGPL"),
    ("GNU GENERAL PUBLIC LICENSE", "GPL"),
    ("Mozilla Public License", "MPL-2.0"),
    ("The Unlicense", "Unlicense"),
    ("unencumbered software released into the public domain", "Unlicense"),
    ("CC0", "CC0-1.0"),
    ("Permission is hereby granted, free of charge", "MIT"),
    ("Neither the name", "BSD-3-Clause"),
    ("Redistribution and use in source and binary forms", "BSD-2-Clause"),
    ("Permission to use, copy, modify, and/or distribute", "ISC"),
)


@dataclass
class Source:
    """One repository of scripts (a ``[[repo]]`` table of sources.toml)."""

    repo: str
    ecosystem: str
    commit: str
    include: list[str] = field(default_factory=lambda: [""])
    cap: int = 25
    root_is_package: bool = False


@dataclass
class Repo:
    """A pinned commit of a repository read through git."""

    source: Source
    git_dir: Path
    files: list[str] = field(default_factory=list)

    def git(self, *args: str) -> bytes:
        return subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], check=True, capture_output=True, timeout=300
        ).stdout

    def list_files(self) -> list[str]:
        if not self.files:
            out = self.git("ls-tree", "-r", "-z", "--name-only", self.source.commit)
            self.files = sorted(p.decode(errors="surrogateescape") for p in out.split(b"\0") if p)
        return self.files

    def read(self, path: str) -> str:
        return self.git("show", f"{self.source.commit}:{path}").decode("utf-8", errors="replace")

    def licence(self) -> dict[str, str]:
        top = [p for p in self.list_files() if "/" not in p and LICENCE_FILES.match(p)]
        for path in top:
            text = " ".join(self.read(path).split())
            for phrase, spdx in LICENCE_PHRASES:
                if phrase.lower() in text.lower():
                    return {"spdx": spdx, "file": path}
        return {"spdx": "NOASSERTION", "file": top[0] if top else ""}


# ---------------------------------------------------------------------------------------------- Python


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    kinds = handler.type
    if kinds is None:
        return True
    names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(n, ast.Name) and n.id in caught for n in names)


def _python_imports(node: ast.AST, guarded: bool = False) -> Iterator[dict[str, Any]]:
    """Absolute imports in source order, with whether a ``try`` that catches ImportError surrounds them."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield {"module": alias.name, "names": None, "guarded": guarded}
        return
    if isinstance(node, ast.ImportFrom):
        if node.level == 0 and node.module:
            yield {"module": node.module, "names": [a.name for a in node.names], "guarded": guarded}
        return
    if isinstance(node, ast.Try | ast.TryStar):
        inner = guarded or any(_catches_import_error(h) for h in node.handlers)
        for child in node.body:
            yield from _python_imports(child, inner)
        for part in (node.handlers, node.orelse, node.finalbody):
            for child in part:
                yield from _python_imports(child, guarded)
        return
    for child in ast.iter_child_nodes(node):
        yield from _python_imports(child, guarded)


def _runs_something(tree: ast.Module) -> bool:
    """A script does work when run: a top-level call, loop or ``with``, or an ``if`` (``__main__`` and the like)."""
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
            return True
        if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.With | ast.AsyncWith):
            return True
    return False


def python_entry(text: str, local_names: set[str]) -> list[dict[str, Any]] | None:
    """The script's imports, each tagged ``stdlib``/``third_party``; None when it is not eligible."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    if not _runs_something(tree):
        return None
    imports: list[dict[str, Any]] = []
    for item in _python_imports(tree):
        top = item["module"].split(".")[0]
        if top in local_names:
            continue
        if top in GUI_STDLIB:
            return None
        item["kind"] = "stdlib" if top in sys.stdlib_module_names or top == "__future__" else "third_party"
        imports.append(item)
    return _unique_if_any(imports, "third_party")


def _unique_if_any(imports: list[dict[str, Any]], kind: str) -> list[dict[str, Any]] | None:
    """The imports without repeats, in order; None when none is of ``kind`` (the script needs no package)."""
    seen: set[str] = set()
    unique = []
    for item in imports:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique if any(i["kind"] == kind for i in unique) else None


def _siblings(files: list[str], folder: PurePosixPath) -> list[str]:
    prefix = "" if str(folder) == "." else f"{folder}/"
    out = set()
    for path in files:
        if path.startswith(prefix):
            out.add(path[len(prefix) :].split("/")[0])
    return sorted(out)


def python_local_names(siblings: list[str]) -> set[str]:
    """What ``import x`` finds beside the script: x.py, x/ (package or namespace), compiled x.*.so."""
    names = set()
    for name in siblings:
        if name.endswith(".py"):
            names.add(name[:-3])
        elif "." not in name:
            names.add(name)
        elif name.endswith(".so"):
            names.add(name.split(".")[0])
    return names


# ---------------------------------------------------------------------------------------------- Node

_JS_TOKENS = re.compile(
    r"//[^\n]*|/\*.*?\*/|`(?:\\.|[^`\\])*`|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"",
    re.S,
)
_REQUIRE = re.compile(r"(?<![\w$.])require\s*\(\s*(['\"])([^'\"\n]+)\1\s*\)")
_DYNAMIC = re.compile(r"(?<![\w$.])import\s*\(\s*(['\"])([^'\"\n]+)\1\s*\)")
_STATIC = re.compile(
    r"(?:^|[;\n}])\s*(import|export)\s+(?:type\s+)?([\w$*{}\s,]*?)\s*(?:from\s*)?(['\"])([^'\"\n]+)\3", re.M
)
_BROWSER = re.compile(r"(?<![\w$.])(document|window)\s*\.")


def _blank_comments(text: str) -> str:
    """Comments become spaces; string literals stay (specifiers live in them). Offsets are kept."""

    def keep(match: re.Match[str]) -> str:
        token = match.group(0)
        return token if token[0] in "'\"`" else re.sub(r"[^\n]", " ", token)

    return _JS_TOKENS.sub(keep, text)


def _mask_strings(text: str) -> str:
    """String contents become spaces (so braces in strings do not count), offsets kept."""

    def mask(match: re.Match[str]) -> str:
        token = match.group(0)
        if token[0] not in "'\"`":
            return token
        return token[0] + re.sub(r"[^\n]", " ", token[1:-1]) + token[-1]

    return _JS_TOKENS.sub(mask, text)


def _in_string(code: str) -> Callable[[int], bool]:
    """Whether an offset lies inside a string literal (a ``require(`` written in a string is no import)."""
    spans = [(m.start(), m.end()) for m in _JS_TOKENS.finditer(code) if m.group(0)[0] in "'\"`"]
    starts = [a for a, _ in spans]

    def inside(offset: int) -> bool:
        k = bisect.bisect_right(starts, offset) - 1
        return k >= 0 and spans[k][0] < offset < spans[k][1]

    return inside


def _try_blocks(masked: str) -> list[tuple[int, int]]:
    """Spans of ``try { ... }`` bodies, by brace matching on string-masked code."""
    spans = []
    for match in re.finditer(r"(?<![\w$.])try\s*\{", masked):
        depth, i = 1, match.end()
        while i < len(masked) and depth:
            depth += {"{": 1, "}": -1}.get(masked[i], 0)
            i += 1
        spans.append((match.end(), i))
    return spans


def _import_names(clause: str) -> list[str]:
    """``d, {a, b as c}`` -> ["default", "a", "b"]; ``* as ns`` -> ["*"]; bare ``import 'x'`` -> []."""
    names: list[str] = []
    clause = clause.strip()
    braces = re.search(r"\{([^}]*)\}", clause)
    head = clause[: braces.start()] if braces else clause
    for part in head.split(","):
        part = part.strip()
        if part.startswith("*"):
            names.append("*")
        elif part:
            names.append("default")
    if braces:
        for part in braces.group(1).split(","):
            name = part.strip().split(" as ")[0].strip()
            if name and not name.startswith("type "):
                names.append(name)
    return names


def package_of(specifier: str) -> str:
    parts = specifier.split("/")
    return "/".join(parts[:2]) if specifier.startswith("@") else parts[0]


def node_entry(text: str, path: str, builtins: set[str]) -> dict[str, Any] | None:
    """The script's module kind and bare-specifier imports in source order; None when it is not eligible."""
    code = _blank_comments(text)
    if _BROWSER.search(_mask_strings(code)):
        return None
    guarded_spans = _try_blocks(_mask_strings(code))
    in_string = _in_string(code)
    found: list[tuple[int, dict[str, Any]]] = []
    for match in _STATIC.finditer(code):
        verb, clause, specifier = match.group(1), match.group(2), match.group(4)
        if (verb == "export" and "from" not in match.group(0)) or in_string(match.start(1)):
            continue
        names = _import_names(clause) if verb == "import" else ["*"] if "*" in clause else _import_names(clause)
        found.append((match.start(4), {"specifier": specifier, "form": verb, "names": names}))
    for regex, form in ((_REQUIRE, "require"), (_DYNAMIC, "dynamic")):
        for match in regex.finditer(code):
            if in_string(match.start()):
                continue
            found.append((match.start(2), {"specifier": match.group(2), "form": form, "names": None}))
    esm = path.endswith(".mjs") or any(item["form"] in ("import", "export") for _, item in found)
    imports: list[dict[str, Any]] = []
    for offset, item in sorted(found, key=lambda f: f[0]):
        spec = item["specifier"]
        if spec.startswith((".", "/", "node:", "#")) or "://" in spec:
            continue
        item["guarded"] = any(a <= offset < b for a, b in guarded_spans)
        item["kind"] = "builtin" if package_of(spec) in builtins or spec in builtins else "package"
        item["package"] = package_of(spec)
        imports.append(item)
    unique = _unique_if_any(imports, "package")
    if unique is None:
        return None
    module = "esm" if esm and not path.endswith(".cjs") else "commonjs"
    return {"module": module, "imports": unique}


def node_builtins() -> tuple[str, set[str]]:
    """The host node's version and its built-in module names (what ``require`` finds without a package)."""
    script = "console.log(JSON.stringify([process.version, require('module').builtinModules]))"
    version, names = json.loads(subprocess.run(["node", "-e", script], check=True, capture_output=True).stdout)
    return str(version), set(names)


# ---------------------------------------------------------------------------------------------- selection


def _eligible_path(path: str, source: Source, extensions: tuple[str, ...], skipped: re.Pattern[str]) -> bool:
    parts = PurePosixPath(path).parts
    if not path.endswith(extensions) or skipped.search(parts[-1]):
        return False
    if any(part in SKIPPED_DIRS or part.startswith(".") for part in parts[:-1]):
        return False
    return any(path.startswith(prefix) for prefix in source.include)


def _order(repo: str, path: str) -> str:
    return hashlib.sha256(f"{repo}:{path}".encode()).hexdigest()


def select(repo: Repo, builtins: set[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    source = repo.source
    files = repo.list_files()
    python = source.ecosystem == "python"
    extensions = (".py",) if python else (".js", ".mjs", ".cjs")
    skipped = PY_SKIPPED_FILES if python else JS_SKIPPED_FILES
    candidates = [p for p in files if _eligible_path(p, source, extensions, skipped)]
    eligible: list[tuple[str, dict[str, Any]]] = []
    listings: dict[PurePosixPath, list[str]] = {}
    for path in sorted(candidates, key=lambda p: _order(source.repo, p)):
        if len(eligible) >= source.cap:
            break
        folders = list(PurePosixPath(path).parents)  # the script's folder first, "." (the root) last
        for folder in folders:
            if folder not in listings:
                listings[folder] = _siblings(files, folder)
        below_root = [listings[f] for f in folders[:-1]]
        if python and any(PY_MANIFESTS.match(n) for names in below_root for n in names):
            continue
        if not python and any("package.json" in names for names in below_root):
            continue
        text = repo.read(path)
        if python:
            searched = below_root if source.root_is_package else [*below_root, listings[folders[-1]]]
            local = set().union(*(python_local_names(names) for names in searched))
            imports = python_entry(text, local - {PurePosixPath(path).stem})
            entry = {"imports": imports} if imports is not None else None
        else:
            entry = node_entry(text, path, builtins)
        if entry is not None:
            eligible.append((path, entry))
    entries = [
        {"id": f"{source.repo}:{path}", "repo": source.repo, "commit": source.commit, "path": path, **entry}
        for path, entry in sorted(eligible)
    ]
    return entries, {"candidates": len(candidates), "selected": len(entries)}


def load_sources(path: Path = SOURCES) -> list[Source]:
    data = tomllib.loads(path.read_text())
    return [Source(**item) for item in data["repo"]]


def git_dir(mirrors: Path, repo: str) -> Path:
    base = mirrors / repo.replace("/", "+")
    for candidate in (base / "repo", base):
        if (candidate / "HEAD").exists():
            return candidate
    raise SystemExit(f"no git directory for {repo} under {mirrors} (expected {base}/repo or {base})")


def build(mirrors: Path, ecosystem: str, sources: list[Source]) -> dict[str, Any]:
    node_version, builtins = node_builtins() if ecosystem == "node" else ("", set())
    repos, entries = [], []
    for source in (s for s in sources if s.ecosystem == ecosystem):
        repo = Repo(source, git_dir(mirrors, source.repo))
        picked, counts = select(repo, builtins)
        licence = repo.licence()
        for entry in picked:
            entry["license"] = licence["spdx"]
        entries += picked
        repos.append({"repo": source.repo, "commit": source.commit, "license": licence, **counts})
        print(f"{ecosystem}: {source.repo}: {counts['selected']} of {counts['candidates']} files", file=sys.stderr)
    runtime = (
        {"node": node_version}
        if ecosystem == "node"
        else {"python": ".".join(map(str, sys.version_info[:3])), "stdlib": "sys.stdlib_module_names"}
    )
    return {
        "format": FORMAT,
        "ecosystem": ecosystem,
        "generated_by": "scripts/gen_corpus.py from bench/corpus/sources.toml",
        "classified_with": runtime,
        "repositories": repos,
        "entries": entries,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirrors", type=Path, required=True, help="folder of git directories, owner+name each")
    parser.add_argument("--sources", type=Path, default=SOURCES)
    parser.add_argument("--out", type=Path, default=CORPUS)
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    sources = load_sources(args.sources)
    stale = []
    for ecosystem in ("python", "node"):
        corpus = build(args.mirrors, ecosystem, sources)
        text = json.dumps(corpus, indent=1, ensure_ascii=False) + "\n"
        target = args.out / f"{ecosystem}.json"
        print(f"{ecosystem}: {len(corpus['entries'])} entries from {len(corpus['repositories'])} repositories")
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(str(target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
