"""Declared Python dependencies: pyproject.toml (PEP 621 or Poetry), requirements.txt and PEP 723.

Every requirement comes back as a PEP 508 string checked by ``packaging``. Anything that would
install from somewhere other than the official registry (URLs, VCS, local paths, editables, other
indexes) is refused with the file and line, because cloche's installs are registry-only.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from cloche.errors import ClocheError, FileNotFound, InvalidPath, InvalidRequest, Unsupported
from cloche.store import safefs

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_INCLUDED_FILES = 64
REGISTRY_ONLY = "cloche installs only from the official registry (PyPI)"


@dataclass(frozen=True, slots=True)
class Pyproject:
    """``kind`` is None when the file declares no dependencies (e.g. only tool settings)."""

    path: str
    sha256: str
    kind: Literal["pep621", "poetry"] | None
    requirements: tuple[str, ...]
    requires_python: str | None
    src_dir: str | None  # workspace-relative 'src' of a src layout (src/<pkg>/__init__.py)


@dataclass(frozen=True, slots=True)
class RequirementsFile:
    path: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # this file and every included one, with sha256


@dataclass(frozen=True, slots=True)
class InlineScript:
    path: str
    line: int
    sha256: str  # of the block only, so editing the code below it changes nothing
    requirements: tuple[str, ...]
    requires_python: str | None


def _where(path: str, line: int | None) -> str:
    return f"{path}:{line}" if line else path


def read_manifest(root: Path, rel: str) -> bytes:
    """A manifest's bytes; a symlinked or special manifest is refused, never followed."""
    info = safefs.lookup(root, rel)
    if info is not None and info.type != "file":
        kind = "a symlink" if info.type == "symlink" else f"not a regular file ({info.type})"
        raise InvalidPath(
            f"{rel} is {kind}; cloche never follows symlinks in a workspace, so it reads "
            "dependency manifests only from regular files: replace it with a copy"
        )
    return safefs.read_file(root, rel, max_bytes=MAX_MANIFEST_BYTES)


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"{path} is not valid UTF-8 (byte {e.start})") from e


def check_requirement(text: str, where: str) -> str:
    """``text`` stripped, if it is a PEP 508 requirement on a registry package."""
    text = text.strip()
    try:
        req = Requirement(text)
    except InvalidRequirement as e:
        reason = str(e).splitlines()[0]
        raise InvalidRequest(f"{where}: {text!r} is not a valid requirement ({reason})") from e
    if req.url:
        why = _not_registry(req.url) or "installs from a URL"
        raise Unsupported(f"{where}: {text!r} {why}; {REGISTRY_ONLY}: name a released version")
    return text


def _not_registry(spec: str) -> str | None:
    """Why a requirement (or its ``@`` URL) does not name a registry package, if it does not."""
    if re.match(r"(git|hg|svn|bzr)\+", spec, re.IGNORECASE):
        return "installs from a version-control repository"
    if spec.lower().startswith("file:"):
        return "installs from a local path"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", spec):
        return "installs from a URL"
    head = re.split(r"[\s;\[@]", spec, maxsplit=1)[0]
    archive = head.endswith((".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2"))
    if head.startswith((".", "/", "~")) or "/" in head or "\\" in head or archive:
        return "installs from a local path"
    return None


def _line_of(text: str, needle: str) -> int | None:
    """First line mentioning ``needle``: TOML parsers do not keep positions."""
    at = text.find(needle)
    return None if at < 0 else text.count("\n", 0, at) + 1


def _key_line(text: str, key: str) -> int | None:
    m = re.search(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*=", text, re.MULTILINE)
    return None if m is None else text.count("\n", 0, m.start()) + 1


def _specifier(text: str, where: str) -> str:
    try:
        SpecifierSet(text)
    except InvalidSpecifier as e:
        raise InvalidRequest(f"{where}: {text!r} is not a valid version specifier") from e
    return text


# pyproject.toml


def parse_pyproject(root: Path, rel: str) -> Pyproject:
    data = read_manifest(root, rel)
    text = _decode(data, rel)
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
        requires_python = _specifier(requires_python, _where(rel, _line_of(text, "requires-python")))
    dynamic = project.get("dynamic", [])
    if "dependencies" in project and "dependencies" not in dynamic:
        deps = project["dependencies"]
        if not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
            raise InvalidRequest(f"{rel}: [project].dependencies must be a list of strings")
        kind, reqs = "pep621", [check_requirement(d, _where(rel, _line_of(text, d))) for d in deps]
    else:
        deps_table = _table(poetry.get("dependencies"), rel, "[tool.poetry.dependencies]")
        for name, spec in deps_table.items():
            where = _where(rel, _key_line(text, name))
            if name.lower() == "python":
                if requires_python is None and isinstance(spec, str):
                    requires_python = _specifier(poetry_constraint(spec, where), where)
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
    return _specifier(",".join(specs), where)


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


# requirements.txt

_COMMENT = re.compile(r"(^|\s+)#.*$")
_OPTION_START = re.compile(r"\s--?[A-Za-z]")
_HASH = re.compile(r"[A-Za-z0-9]+:[0-9a-fA-F]+")
_SHORT = {"-r": "--requirement", "-c": "--constraint", "-e": "--editable", "-i": "--index-url", "-f": "--find-links"}
_REFUSED = {
    "--editable": "editable installs install local or VCS checkouts",
    "--index-url": "it points at another package index",
    "--extra-index-url": "it adds another package index",
    "--find-links": "it installs from other locations",
    "--trusted-host": "it disables TLS checks for another index",
    "--no-index": "it turns the registry off",
}
# Global options that change nothing about which packages are named; accepted and dropped.
_IGNORED = frozenset({"--pre", "--prefer-binary", "--require-hashes", "--only-binary", "--no-binary"})


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) after joining '\\' continuations and stripping comments."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate([*text.split("\n"), ""], 1):  # '' flushes a trailing '\\'
        if not pending:
            start = number
        if line.endswith("\\") and not line.lstrip().startswith("#"):
            pending.append(line[:-1])
            continue
        joined = _COMMENT.sub("", "".join([*pending, line])).strip()
        pending = []
        if joined:
            out.append((start, joined))
    return out


def _option(line: str) -> tuple[str, str]:
    """(long option name, value) of an option line: '-r f', '-rf', '--requirement=f', '--requirement f'."""
    if line.startswith("--"):
        name, _, value = line.partition("=") if "=" in line.split()[0] else line.partition(" ")
        return name.strip(), value.strip()
    return _SHORT.get(line[:2], line[:2]), line[2:].strip()


class _RequirementsParser:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requirements: list[str] = []
        self.constraints: list[str] = []
        self.files: dict[str, str] = {}

    def parse(self, rel: str, text: str, *, constraint: bool) -> None:
        for number, line in _logical_lines(text):
            where = f"{rel}:{number}"
            if line.startswith("-"):
                self._option(rel, where, line, constraint=constraint)
                continue
            options = _OPTION_START.search(line)
            spec, extra = (line[: options.start()], line[options.start() :]) if options else (line, "")
            if (why := _not_registry(spec.strip())) is not None:  # pip's forms that are not PEP 508
                raise Unsupported(f"{where}: {spec.strip()!r} {why}; {REGISTRY_ONLY}: name a released version")
            req = check_requirement(spec, where) + _hashes(extra, where)
            (self.constraints if constraint else self.requirements).append(req)

    def _option(self, rel: str, where: str, line: str, *, constraint: bool) -> None:
        name, value = _option(line)
        if name in _REFUSED:
            raise Unsupported(f"{where}: {line!r}: {_REFUSED[name]}; {REGISTRY_ONLY}")
        if name in _IGNORED:
            return
        if name not in ("--requirement", "--constraint"):
            raise InvalidRequest(f"{where}: the option {name!r} is not supported in {posixpath.basename(rel)}")
        if not value:
            raise InvalidRequest(f"{where}: {name} needs a file name")
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
            raise Unsupported(f"{where}: {value!r} is a URL; include only files in the workspace")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), value))
        if value.startswith("/") or target == ".." or target.startswith("../"):
            raise InvalidPath(f"{where}: {value!r} is outside the workspace; includes must stay inside it")
        if target in self.files:
            return  # already read: an include cycle, or the same file twice
        if len(self.files) >= MAX_INCLUDED_FILES:
            raise InvalidRequest(f"{where}: more than {MAX_INCLUDED_FILES} included requirement files")
        try:
            # Inside a constraints file every include is a constraint too.
            self.visit(target, constraint=constraint or name == "--constraint")
        except FileNotFound as e:
            raise InvalidRequest(f"{where}: {name} {value!r}: {target} does not exist") from e

    def visit(self, rel: str, *, constraint: bool) -> None:
        self.files[rel] = ""  # marked before parsing so cycles stop here
        data = read_manifest(self.root, rel)
        self.files[rel] = hashlib.sha256(data).hexdigest()
        self.parse(rel, _decode(data, rel), constraint=constraint)


def _hashes(options: str, where: str) -> str:
    tokens = options.replace("=", " ").split()
    out = []
    while tokens:
        token = tokens.pop(0)
        if token != "--hash":
            raise InvalidRequest(f"{where}: the per-requirement option {token!r} is not supported")
        if not tokens or not _HASH.fullmatch(tokens[0]):
            raise InvalidRequest(f"{where}: --hash needs a value like 'sha256:<hex digest>'")
        out.append(f" --hash={tokens.pop(0)}")
    return "".join(out)


def parse_requirements(root: Path, rel: str) -> RequirementsFile:
    """A requirements file with its -r includes and -c constraints (relative to the including file)."""
    parser = _RequirementsParser(root)
    parser.visit(rel, constraint=False)
    return RequirementsFile(
        rel,
        tuple(dict.fromkeys(parser.requirements)),
        tuple(dict.fromkeys(parser.constraints)),
        tuple(parser.files.items()),
    )


# PEP 723 inline script metadata

_INLINE = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def parse_inline(source: bytes | str, *, path: str) -> InlineScript | None:
    """The ``# /// script`` block of an entry file, or None; two script blocks are an error."""
    text = source.decode("utf-8-sig", errors="replace") if isinstance(source, bytes) else source
    text = text.replace("\r\n", "\n")
    blocks = [m for m in _INLINE.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    line = text.count("\n", 0, blocks[0].start()) + 1
    if len(blocks) > 1:
        second = text.count("\n", 0, blocks[1].start()) + 1
        raise InvalidRequest(
            f"{path}:{second}: a second '# /// script' block (the first is at line {line}); PEP 723 allows only one"
        )
    block = blocks[0]
    content = "".join(
        raw[2:] if raw.startswith("# ") else raw[1:] for raw in block.group("content").splitlines(keepends=True)
    )
    try:
        meta = tomllib.loads(content)
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest(f"{path}:{line}: the '# /// script' block is not valid TOML: {e}") from e
    deps = meta.get("dependencies", [])
    if not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
        raise InvalidRequest(f"{path}:{line}: 'dependencies' in the script block must be a list of strings")
    requires_python = meta.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise InvalidRequest(f"{path}:{line}: 'requires-python' in the script block must be a string")

    def where(needle: str) -> str:
        at = _line_of(block.group(0), needle)
        return f"{path}:{line + at - 1 if at else line}"

    return InlineScript(
        path,
        line,
        hashlib.sha256(block.group(0).encode()).hexdigest(),
        tuple(dict.fromkeys(check_requirement(d, where(d)) for d in deps)),
        _specifier(requires_python, where("requires-python")) if requires_python is not None else None,
    )
