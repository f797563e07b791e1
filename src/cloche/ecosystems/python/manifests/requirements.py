"""requirements.txt (pip's format): requirements, ``-r``/``-c`` includes, hashes; options that would
install from elsewhere than the registry are refused with the file and line."""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from cloche.ecosystems.python.manifests.checks import (
    REGISTRY_ONLY,
    check_requirement,
    decode,
    not_registry,
    read_manifest,
)
from cloche.errors import FileNotFound, InvalidPath, InvalidRequest, Unsupported

MAX_INCLUDED_FILES = 64


@dataclass(frozen=True, slots=True)
class RequirementsFile:
    path: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # this file and every included one, with sha256


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
            if (why := not_registry(spec.strip())) is not None:  # pip's forms that are not PEP 508
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
        self.parse(rel, decode(data, rel), constraint=constraint)


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
