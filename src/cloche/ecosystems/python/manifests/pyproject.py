"""pyproject.toml: PEP 621 ``[project]`` dependencies or Poetry's ``[tool.poetry]`` tables, as PEP 508 strings."""

from __future__ import annotations

import hashlib
import posixpath
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from cloche.ecosystems.python.manifests.checks import (
    REGISTRY_ONLY,
    check_requirement,
    check_specifier,
    decode,
    line_of,
    read_manifest,
    where_at,
)
from cloche.errors import ClocheError, InvalidRequest, Unsupported
from cloche.store import safefs


@dataclass(frozen=True, slots=True)
class Pyproject:
    """``kind`` is None when the file declares no dependencies (e.g. only tool settings)."""

    path: str
    sha256: str
    kind: Literal["pep621", "poetry"] | None
    requirements: tuple[str, ...]
    requires_python: str | None
    src_dir: str | None  # workspace-relative 'src' of a src layout (src/<pkg>/__init__.py)


def parse_pyproject(root: Path, rel: str) -> Pyproject:
    data = read_manifest(root, rel)
    text = decode(data, rel)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest(f"{rel} is not valid TOML: {e}") from e
    project = _table(doc.get("project"), rel, "[project]")
    poetry = _table(_table(doc.get("tool"), rel, "[tool]").get("poetry"), rel, "[tool.poetry]")
    kind: Literal["pep621", "poetry"] | None = None
    reqs: list[str] = []
    requires_python = project.get("requires-python")
    if requires_python is not None:
        if not isinstance(requires_python, str):
            raise InvalidRequest(f"{rel}: [project].requires-python must be a string")
        requires_python = check_specifier(requires_python, where_at(rel, line_of(text, "requires-python")))
    dynamic = project.get("dynamic", [])
    if "dependencies" in project and "dependencies" not in dynamic:
        deps = project["dependencies"]
        if not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
            raise InvalidRequest(f"{rel}: [project].dependencies must be a list of strings")
        kind, reqs = "pep621", [check_requirement(d, where_at(rel, line_of(text, d))) for d in deps]
    else:
        deps_table = _table(poetry.get("dependencies"), rel, "[tool.poetry.dependencies]")
        for name, spec in deps_table.items():
            where = where_at(rel, _key_line(text, name))
            if name.lower() == "python":
                if requires_python is None and isinstance(spec, str):
                    requires_python = check_specifier(poetry_constraint(spec, where), where)
                continue
            kind = "poetry"
            reqs.extend(poetry_requirements(name, spec, where))
    return Pyproject(
        rel,
        hashlib.sha256(data).hexdigest(),
        kind,
        tuple(dict.fromkeys(reqs)),
        requires_python,
        _src_dir(root, posixpath.dirname(rel), project, poetry),
    )


def _table(value: object, path: str, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path}: {name} must be a table")
    return value


def _src_dir(root: Path, base: str, project: dict[str, Any], poetry: dict[str, Any]) -> str | None:
    src = posixpath.join(base, "src") if base else "src"
    try:
        if (info := safefs.lookup(root, src)) is None or info.type != "dir":
            return None
        # Cheap guesses first (the distribution's name, Poetry's packages), then a bounded listing.
        names = [str(n) for n in (project.get("name"), poetry.get("name")) if n]
        packages = poetry.get("packages")
        if isinstance(packages, list):
            names += [str(p["include"]) for p in packages if isinstance(p, dict) and "include" in p]
        for name in names:
            pkg = re.sub(r"[-.]+", "_", name)
            for candidate in dict.fromkeys((pkg, pkg.lower())):
                info = safefs.lookup(root, f"{src}/{candidate}/__init__.py")
                if info is not None and info.type == "file":
                    return src
        for entry in safefs.list_dir(root, src, max_entries=2000, with_sha256=False):
            parts = entry.path[len(src) + 1 :].split("/")
            if len(parts) == 2 and parts[1] == "__init__.py" and entry.type == "file":
                return src
    except ClocheError:  # a symlinked src, or a huge tree: not something to put on sys.path
        return None
    return None


def poetry_requirements(name: str, spec: object, where: str) -> list[str]:
    """PEP 508 strings for one ``[tool.poetry.dependencies]`` entry (several for a list of tables)."""
    tables = [{"version": spec}] if isinstance(spec, str) else spec if isinstance(spec, list) else [spec]
    out: list[str] = []
    for table in tables:
        if not isinstance(table, dict):
            raise InvalidRequest(f"{where}: the Poetry dependency {name!r} must be a string or a table")
        for key in ("git", "path", "url", "source"):
            if key in table:
                raise Unsupported(
                    f"{where}: the Poetry dependency {name!r} uses {key!r}; {REGISTRY_ONLY}: "
                    "give it a version from PyPI instead"
                )
        if table.get("optional"):
            continue  # only installed through an extra, which a script run does not request
        extras = table.get("extras", [])
        text = name + (f"[{','.join(map(str, extras))}]" if extras else "")
        text += poetry_constraint(str(table.get("version", "*")), where)
        markers = [f"({table['markers']})"] if table.get("markers") else []
        if table.get("python"):
            markers.append(_python_marker(poetry_constraint(str(table["python"]), where)))
        if table.get("platform"):
            markers.append(f'sys_platform == "{table["platform"]}"')
        if markers:
            text += "; " + " and ".join(m for m in markers if m)
        out.append(check_requirement(text, where))
    return out


_CONSTRAINT = re.compile(r"\s*(\^|~=|~|===|==|!=|>=|<=|>|<|=)?\s*([^\s,]+)\s*,?")


def poetry_constraint(text: str, where: str) -> str:
    """A Poetry version constraint as a PEP 440 specifier ('' for any version)."""
    if "|" in text:
        raise Unsupported(
            f"{where}: {text!r} has alternatives ('||'), which a PEP 508 requirement cannot express; use a single range"
        )
    specs: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _CONSTRAINT.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidRequest(f"{where}: {text!r} is not a valid Poetry version constraint")
        pos = m.end()
        op, ver = m.group(1) or "", m.group(2)
        if op == "^":
            specs.append(_bounded(ver, caret=True, where=where))
        elif op == "~":
            specs.append(_bounded(ver, caret=False, where=where))
        elif op in ("", "="):
            if ver != "*":
                specs.append(f"=={ver}")
        else:
            specs.append(op + ver)
    return check_specifier(",".join(specs), where)


def _bounded(ver: str, *, caret: bool, where: str) -> str:
    """``^1.2.3`` -> '>=1.2.3,<2.0.0' (first non-zero part bumps); ``~1.2`` -> '>=1.2,<1.3'."""
    try:
        release = list(Version(ver).release)
    except InvalidVersion as e:
        raise InvalidRequest(f"{where}: {ver!r} is not a valid version") from e
    first_nonzero = next((i for i, part in enumerate(release) if part), len(release) - 1)
    bump = first_nonzero if caret else min(1, len(release) - 1)
    upper = [*release[:bump], release[bump] + 1] + [0] * (len(release) - bump - 1)
    return f">={ver},<{'.'.join(map(str, upper))}"


def _python_marker(specifier: str) -> str:
    clauses = []
    for spec in SpecifierSet(specifier):
        version = spec.version
        if spec.operator == "==" and version.count(".") == 1:
            version += ".*"  # Poetry's python = "3.8" means any 3.8.x
        clauses.append(f'python_full_version {spec.operator} "{version}"')
    return " and ".join(sorted(clauses))


def _key_line(text: str, key: str) -> int | None:
    m = re.search(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*=", text, re.MULTILINE)
    return None if m is None else text.count("\n", 0, m.start()) + 1
