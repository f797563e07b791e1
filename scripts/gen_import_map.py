#!/usr/bin/env python3
"""Derive cloche's Python import-name -> PyPI project data from named, offline sources (re-run to refresh).

Sources (each recorded with its version and licence in the map's header and in docs/dependencies.md):

* the download ranking: a TSV with a ``rank_among_15000_most_downloaded`` column (the package list);
* pigar's SQLite index of PyPI distributions and the top-level modules each ships, read from inside its wheel
  (``pip download --no-deps pigar==2.2.0``);
* typeshed's ``stubs/<distribution>/`` trees (their top-level ``.pyi`` names, dotted for namespace packages);
* pyodide's recipes (``packages/*/meta.yaml``, ``top-level``);
* optionally conda-forge's ``grayskull_pypi_mapping.json`` (``import_name`` per PyPI name).

Git sources are read from a bare repository (``git --git-dir``) at a pinned commit, so a re-run over the same
sources writes byte-identical files. Writes, under src/cloche/ecosystems/python/data/:

* ``top_pypi.txt``: the ranked projects, best first (the names the exact-name layer vouches for);
* ``import_map.json``: module -> the ranked projects that ship it, best download rank first, plus the shared
  namespace roots (``google``, ``azure``, ...) whose modules the namespace rules resolve;
* ``long_tail.txt.gz``: module -> projects outside the ranking that pigar says ship it: candidates only, which the
  resolver installs after checking PyPI at run time (age, and the wheel really shipping the module).

    python scripts/gen_import_map.py --pigar pigar-2.2.0-py3-none-any.whl \\
        --typeshed /path/to/typeshed.git --pyodide /path/to/pyodide-recipes.git [--conda-mapping FILE]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.resolve.wheel_files import JUNK_NAMES, import_names

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "src" / "cloche" / "ecosystems" / "python" / "data"
DEFAULT_TSV = Path("/work/.library/env/packages/pypi.tsv")
MAP_FORMAT = 2
DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# A top-level module is a shared namespace when this many ranked projects named '<module>-...' ship it.
NAMESPACE_MIN_PROJECTS = 2
# '<project>-<suffix>' names a part of a project split into several distributions; PART_SUFFIXES name the parts
# a whole project that also ships the module (pyside6 beside pyside6-essentials) still goes before.
SPLIT_SUFFIXES = frozenset({"core", "slim", "base", "lib", "binaries", "binary", "essentials", "runtime"})
PART_SUFFIXES = frozenset({"slim", "base", "essentials", "runtime"})

Provided = dict[str, set[str]]  # canonical project name -> modules


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def usable(module: str) -> bool:
    return bool(DOTTED.fullmatch(module)) and not any(p in JUNK_NAMES for p in module.split("."))


# ---------------------------------------------------------------- sources


def read_ranking(tsv: Path, top: int) -> tuple[list[str], dict[str, Any]]:
    """The ``top`` best-ranked project names, best first (unranked rows are ignored), and the source record."""
    ranked: list[tuple[int, str]] = []
    months: set[str] = set()
    with tsv.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            rank = (row.get("rank_among_15000_most_downloaded") or "").strip()
            if rank.isdigit():
                ranked.append((int(rank), row["name"]))
                months.add(row.get("month") or "")
    ranked.sort()
    names = [name for _, name in ranked[:top]]
    source = {
        "name": "download ranking",
        "file": tsv.name,
        "version": f"sha256 {sha256(tsv)[:16]}, months up to {max(months)}",
        "licence": "PyPI download statistics (public BigQuery dataset)",
    }
    return names, source


def read_pigar(wheel: Path) -> tuple[Provided, dict[str, Any]]:
    """Every distribution in pigar's index and its top-level module names."""
    provided: Provided = defaultdict(set)
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "pigar.sqlite3"
        db.write_bytes(zf.read("pigar/.db.sqlite3"))
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT d.name, t.name FROM top_level_module_names t JOIN distributions d ON d.id = t.distribution_id"
            ).fetchall()
            count = conn.execute("SELECT count(*) FROM distributions").fetchone()[0]
    for dist, module in rows:
        if usable(module):
            provided[canonicalize_name(dist)].add(module)
    source = {
        "name": "pigar module index",
        "file": wheel.name,
        "version": f"{wheel.name.split('-')[1]} (sha256 {sha256(wheel)[:16]}, {count} distributions)",
        "licence": "BSD-3-Clause",
    }
    return provided, source


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True).stdout


def _git_source(name: str, repo: str, git_dir: Path, commit: str, licence: str) -> tuple[str, dict[str, Any]]:
    sha, date = _git(git_dir, "log", "-1", "--format=%H %cs", commit).split()
    return sha, {"name": name, "repository": repo, "version": f"commit {sha} ({date})", "licence": licence}


def read_typeshed(git_dir: Path, commit: str) -> tuple[Provided, dict[str, Any]]:
    """``stubs/<dist>/``: the stub files' import names (``.pyi`` read as modules), per distribution."""
    sha, source = _git_source("typeshed stubs", "python/typeshed", git_dir, commit, "Apache-2.0 AND MIT")
    files: dict[str, list[str]] = defaultdict(list)
    for line in _git(git_dir, "ls-tree", "-r", "--name-only", sha, "stubs").splitlines():
        _, dist, *rest = line.split("/")
        if rest and not rest[0].startswith("@") and rest[-1].endswith(".pyi"):
            files[dist].append("/".join(rest)[: -len(".pyi")] + ".py")
    provided: Provided = {}
    for dist, paths in files.items():
        names = {n for n in import_names(paths) if usable(n)}
        if names:
            provided[canonicalize_name(dist)] = names
    return provided, source


def _meta_yaml(text: str) -> tuple[str | None, list[str]]:
    """(package name, top-level modules) of a pyodide recipe: only these two keys are read."""
    name = re.search(r"^package:\s*\n(?:[ \t]+.*\n)*?[ \t]+name:\s*['\"]?([^'\"\s#]+)", text, re.MULTILINE)
    block = re.search(r"^[ \t]*top-level:\s*\n((?:[ \t]*-[^\n]*\n?)+)", text, re.MULTILINE)
    tops = re.findall(r"-\s*['\"]?([^'\"\s#]+)", block.group(1)) if block else []
    return (name.group(1) if name else None), tops


def read_pyodide(git_dir: Path, commit: str) -> tuple[Provided, dict[str, Any]]:
    sha, source = _git_source("pyodide recipes", "pyodide/pyodide-recipes", git_dir, commit, "MPL-2.0")
    provided: Provided = {}
    for line in _git(git_dir, "ls-tree", "-r", "--name-only", sha, "packages").splitlines():
        if line.count("/") == 2 and line.endswith("/meta.yaml"):
            name, tops = _meta_yaml(_git(git_dir, "show", f"{sha}:{line}"))
            modules = {t for t in tops if usable(t)}
            if name and modules:
                provided[canonicalize_name(name)] = modules
    return provided, source


def read_conda_mapping(path: Path) -> tuple[Provided, dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    provided: Provided = defaultdict(set)
    for entry in data.values():
        pypi, module = entry.get("pypi_name"), entry.get("import_name")
        if isinstance(pypi, str) and isinstance(module, str) and usable(module):
            provided[canonicalize_name(pypi)].add(module)
    source = {
        "name": "conda-forge import mapping",
        "repository": "regro/cf-graph-countyfair",
        "file": path.name,
        "version": f"sha256 {sha256(path)[:16]}",
        "licence": "BSD-3-Clause",
    }
    return provided, source


def read_python2_names() -> tuple[dict[str, str], dict[str, Any]]:
    """Python 2 standard-library module -> its Python 3 home(s), from 2to3's own tables (lib2to3, in the
    standard library up to 3.12): a script importing ``urllib2`` was written for Python 2, not for a project."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lib2to3.fixes import fix_imports, fix_urllib

    names = {old: new for old, new in fix_imports.MAPPING.items()}
    names |= {old: ", ".join(m for m, _ in moves) for old, moves in fix_urllib.MAPPING.items() if old != "urllib"}
    version = f"lib2to3 of Python {sys.version_info.major}.{sys.version_info.minor}"
    return names, {"name": "Python 2 module names", "version": version, "licence": "PSF-2.0"}


# ---------------------------------------------------------------- derivation


def merge(sources: Iterable[Provided]) -> Provided:
    merged: Provided = defaultdict(set)
    for provided in sources:
        for dist, modules in provided.items():
            merged[dist] |= modules
    return merged


def ranked_modules(provided: Provided, ranking: Sequence[str]) -> dict[str, list[str]]:
    """module -> ranked projects shipping it, in rank order (so every list is best-ranked first)."""
    modules: dict[str, list[str]] = defaultdict(list)
    for dist in ranking:
        for module in sorted(provided.get(canonicalize_name(dist), ())):
            modules[module].append(dist)
    return dict(modules)


def namespace_roots(modules: Mapping[str, Sequence[str]]) -> list[str]:
    """Top-level modules that several ranked '<module>-...' projects share (google, azure, opentelemetry)."""
    roots = []
    for module, dists in modules.items():
        if "." in module:
            continue
        prefix = canonicalize_name(module) + "-"
        if sum(canonicalize_name(d).startswith(prefix) for d in dists) >= NAMESPACE_MIN_PROJECTS:
            roots.append(module)
    return sorted(roots)


def prefer_whole_projects(modules: dict[str, list[str]], provided: Provided, ranking: Sequence[str]) -> list[str]:
    """A meta-package that ships no module of its own ('apache-airflow' installs 'apache-airflow-core', which
    ships airflow) goes before its part: it installs the part and the rest a script may import. Only a ranked
    project that no source lists any module for counts, and only ahead of a part named '<project>-<suffix>' with
    a suffix that says "part of" (``SPLIT_SUFFIXES``); a whole project that ships the module too goes before a
    part named with a ``PART_SUFFIXES`` word (pyside6 before pyside6-essentials, whose siblings hold the rest of
    the namespace). Returns what was moved, for review."""
    ranked = {canonicalize_name(d): d for d in ranking}
    moved = []
    for module, dists in modules.items():
        base, _, suffix = canonicalize_name(dists[0]).rpartition("-")
        whole = ranked.get(base)
        if suffix not in SPLIT_SUFFIXES or whole is None:
            continue
        if provided.get(base) and not (suffix in PART_SUFFIXES and whole in dists):
            continue
        modules[module] = [whole, *(d for d in dists if d != whole)]
        moved.append(f"{module}: {whole} before {dists[0]}")
    return moved


def long_tail(provided: Provided, ranking: Sequence[str], stdlib: frozenset[str]) -> bytes:
    """module -> projects outside the ranking that ship it, as sorted lines, gzip'd without a timestamp.

    ``module`` alone: the one candidate is the project named like the module; otherwise ``module<TAB>`` and
    space-separated names, where ``=`` stands for the project named like the module.
    """
    ranked = {canonicalize_name(d) for d in ranking}
    candidates: dict[str, set[str]] = defaultdict(set)
    for dist, modules in provided.items():
        if dist in ranked:
            continue
        for module in modules:
            if module.split(".")[0] not in stdlib:
                candidates[module].add(dist)
    lines = []
    for module in sorted(candidates):
        own = canonicalize_name(module)
        others = sorted(d for d in candidates[module] if d != own)
        if not others:
            lines.append(module)
        else:
            lines.append(module + "\t" + " ".join((["="] if own in candidates[module] else []) + others))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(("\n".join(lines) + "\n").encode("utf-8"))
    return buf.getvalue()


# ---------------------------------------------------------------- output


def write_ranking(path: Path, names: Sequence[str], source: Mapping[str, Any]) -> None:
    lines = [f"# the {len(names)} most downloaded PyPI projects, from {source['file']} ({source['version']})"]
    lines += [f"{i}\t{name}" for i, name in enumerate(names, 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_map(path: Path, doc: Mapping[str, Any]) -> None:
    """Sorted-key JSON with one module per line so refreshes diff readably."""

    def value(obj: Any) -> str:
        if isinstance(obj, dict) and obj:
            rows = [f"{json.dumps(k)}: {json.dumps(obj[k], separators=(',', ':'))}" for k in sorted(obj)]
            return "{\n" + ",\n".join(rows) + "\n}"
        return json.dumps(obj, separators=(",", ":"))

    text = "{" + ",\n".join(f"{json.dumps(k)}: {value(doc[k])}" for k in sorted(doc)) + "}\n"
    assert json.loads(text) == doc  # the hand-rolled layout must stay valid JSON
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=15000, help="how many ranked projects (default 15000)")
    ap.add_argument("--tsv", type=Path, default=DEFAULT_TSV, help="the ranking table")
    ap.add_argument("--pigar", type=Path, required=True, help="pigar's wheel (pigar-2.2.0-py3-none-any.whl)")
    ap.add_argument("--typeshed", type=Path, help="a git dir of python/typeshed")
    ap.add_argument("--typeshed-commit", default="HEAD")
    ap.add_argument("--pyodide", type=Path, help="a git dir of pyodide/pyodide-recipes")
    ap.add_argument("--pyodide-commit", default="HEAD")
    ap.add_argument("--conda-mapping", type=Path, help="conda-forge's grayskull_pypi_mapping.json")
    ap.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = ap.parse_args(argv)

    ranking, ranking_source = read_ranking(args.tsv, args.top)
    pigar, pigar_source = read_pigar(args.pigar)
    sources = [ranking_source, pigar_source]
    extra: list[Provided] = []
    if args.typeshed:
        typeshed, record = read_typeshed(args.typeshed, args.typeshed_commit)
        extra.append(typeshed)
        sources.append(record)
    if args.pyodide:
        pyodide, record = read_pyodide(args.pyodide, args.pyodide_commit)
        extra.append(pyodide)
        sources.append(record)
    if args.conda_mapping:
        conda, record = read_conda_mapping(args.conda_mapping)
        extra.append(conda)
        sources.append(record)

    python2, record = read_python2_names()
    sources.append(record)
    provided = merge([pigar, *extra])
    modules = ranked_modules(provided, ranking)
    moved = prefer_whole_projects(modules, provided, ranking)
    roots = namespace_roots(modules)
    unmapped = sorted(d for d in ranking if not provided.get(canonicalize_name(d)))
    doc = {
        "format": MAP_FORMAT,
        "sources": sources,
        "projects": len(ranking),
        "mapped": len(ranking) - len(unmapped),
        "unmapped": unmapped,
        "namespaces": roots,
        "modules": modules,
        "python2": python2,
        # The long tail leaves out this interpreter's standard-library names (scans never ask for them).
        "stdlib": f"Python {sys.version_info.major}.{sys.version_info.minor}",
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_ranking(args.out_dir / "top_pypi.txt", ranking, ranking_source)
    write_map(args.out_dir / "import_map.json", doc)
    (args.out_dir / "long_tail.txt.gz").write_bytes(long_tail(provided, ranking, frozenset(sys.stdlib_module_names)))

    shared = sorted((m for m, d in modules.items() if len(d) > 1), key=lambda m: (-len(modules[m]), m))
    log(f"{doc['mapped']} of {len(ranking)} ranked projects mapped, {len(modules)} modules, {len(roots)} namespaces")
    log(f"split projects put first: {'; '.join(moved) or 'none'}")
    log(
        "most contested (review for overrides.toml): "
        + "; ".join(f"{m}: {', '.join(modules[m][:4])}" for m in shared[:40])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
