"""What a shell command asks of the server: the entry points it starts and the packages it installs.

Pure: reads no files. ``parse(command)`` reads each simple command (see ``command_lexer``) through its wrappers
(``cd``, ``NAME=value``, ``env``, ``timeout``, ``time``, ``nice``, ``nohup``, ``exec``, ``uv run``) down to the
program, and knows the argument grammar of the programs that start code (``python``, ``node``, ``go run``,
``java``) and of the installers agents type (``pip install``, ``python -m pip install``, ``uv pip install``,
``uv add``, ``npm install``). Anything it does not recognise is left alone: that part runs as typed.

Paths are workspace-relative after following ``cd``; a command that leaves the workspace (``cd /tmp``) stops
yielding entries from there on.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cloche.service.command_lexer import EXPANSION, SimpleCommand, in_workspace, options, split
from cloche.service.install_commands import InstallRequest, npm_install, pip_command, pip_install, pip_uninstall

_PYTHON = re.compile(r"python(3(\.\d+)?)?")
_PIP = re.compile(r"pip(3(\.\d+)?)?")

Language = Literal["python", "node", "go", "java"]


@dataclass(frozen=True)
class RunEntry:
    """A program the command starts. ``path`` is workspace-relative: the file; for ``python -m`` the folder the
    module is looked up from, with ``module`` naming it; for ``go run .`` the package folder ("" for the root)."""

    language: Language
    path: str
    module: str | None = None
    package: bool = False  # ``path`` is a Go package folder, not a file
    code: str | None = None  # ``python -c CODE``: the source; ``path`` names it in the command's folder
    args: tuple[str, ...] = ()
    segment: int = 0  # index of its simple command


@dataclass(frozen=True)
class ParsedCommand:
    command: str
    understood: bool  # False: shell structure beyond simple commands; it runs as typed, nothing is prepared
    segments: tuple[SimpleCommand, ...] = ()
    entries: tuple[RunEntry, ...] = ()
    installs: tuple[InstallRequest, ...] = ()

    @property
    def only_installs(self) -> bool:
        """Every simple command is an install the server performs: nothing needs to run in the jail."""
        return bool(self.installs) and len(self.installs) == len(self.segments)

    def rewritten(self, replacements: dict[int, str]) -> str:
        """The command with the given simple commands (by index) replaced; redirections typed with them stay."""
        text = self.command
        for index in sorted(replacements, reverse=True):
            seg = self.segments[index]
            new = " ".join([replacements[index], *seg.redirections])
            text = text[: seg.start] + new + text[seg.end :]
        return text


def parse(command: str) -> ParsedCommand:
    segments = split(command)
    if segments is None:
        return ParsedCommand(command, understood=False)
    entries: list[RunEntry] = []
    installs: list[InstallRequest] = []
    cwd: str | None = ""
    for index, seg in enumerate(segments):
        words = list(seg.words)
        if words[:1] == ["cd"]:
            cwd = _cd(cwd, words[1:]) if seg.after not in ("|", "&") else cwd
            continue
        words = _unwrap(words)
        if not words or cwd is None:
            continue
        typed = command[seg.start : seg.end]
        found = _program(words, cwd, index, typed)
        if isinstance(found, RunEntry):
            entries.append(found)
        elif isinstance(found, InstallRequest):
            installs.append(found)
    return ParsedCommand(command, True, tuple(segments), tuple(entries), tuple(installs))


def _cd(cwd: str | None, args: list[str]) -> str | None:
    if len(args) != 1 or cwd is None or EXPANSION.search(args[0]) or args[0] == "-":
        return None
    return in_workspace(cwd, args[0])


# Wrappers: programs that run the rest of their arguments as a command.
_TIMEOUT_VALUED = ("-s", "--signal", "-k", "--kill-after")
# `uv run` options that take a value; the jail's uv (ecosystems/python/jail_tools/uv) skips the same ones.
UV_RUN_VALUED = options(
    "--with --with-requirements --with-editable --python -p --directory --project --env-file --extra "
    "--group --only-group --no-group --index --default-index --package --color --cache-dir --config-file"
)


def _unwrap(words: list[str]) -> list[str]:
    """The command a wrapper runs (``timeout 10 python x.py`` -> ``python x.py``), repeatedly."""
    while words:
        head = posixpath.basename(words[0])
        if head in ("time", "nohup", "exec", "command"):
            words = _skip_flags(words[1:], ())
        elif head == "nice":
            words = _skip_flags(words[1:], ("-n", "--adjustment"))
        elif head == "env":
            rest = _skip_flags(words[1:], ("-u", "--unset", "-C", "--chdir"))
            while rest and "=" in rest[0] and not rest[0].startswith("="):
                rest = rest[1:]
            words = rest
        elif head == "timeout":
            rest = _skip_flags(words[1:], _TIMEOUT_VALUED)
            words = rest[1:]  # the duration
        elif head == "uv" and words[1:2] == ["run"]:
            rest = _skip_flags(words[2:], tuple(UV_RUN_VALUED))
            if rest[:1] and rest[0].endswith(".py"):
                rest = ["python", *rest]
            words = rest
        else:
            return words
    return words


def _skip_flags(words: list[str], valued: Sequence[str]) -> list[str]:
    i = 0
    while i < len(words) and words[i].startswith("-") and words[i] != "-":
        if words[i] == "--":
            return words[i + 1 :]
        i += 2 if words[i] in valued else 1
    return words[i:]


def _program(words: list[str], cwd: str, index: int, typed: str) -> RunEntry | InstallRequest | None:
    head = posixpath.basename(words[0])
    args = words[1:]
    if _PYTHON.fullmatch(head):
        return _python(args, cwd, index, typed)
    if _PIP.fullmatch(head):
        return pip_command(args, cwd, index, typed)
    if head == "uv" and args[:2] == ["pip", "install"]:
        return pip_install(args[2:], cwd, index, typed)
    if head == "uv" and args[:2] == ["pip", "uninstall"]:
        return pip_uninstall(args[2:], index, typed)
    if head == "uv" and args[:1] == ["add"]:
        return pip_install(args[1:], cwd, index, typed)
    if head == "node":
        return _node(args, cwd, index)
    if head in ("npm", "pnpm", "yarn"):
        return npm_install(head, args, index, typed)
    if head == "go" and args[:1] == ["run"]:
        return _go_run(args[1:], cwd, index)
    if head == "java":
        return _java(args, cwd, index)
    return None


def _entry(language: Language, cwd: str, path: str, index: int, args: Sequence[str]) -> RunEntry | None:
    if EXPANSION.search(path):
        return None
    where = in_workspace(cwd, path)
    return RunEntry(language, where, args=tuple(args), segment=index) if where else None  # "" is a folder


def _code_entry(cwd: str, code: str, index: int, args: Sequence[str]) -> RunEntry | None:
    """``python -c CODE`` as an entry named by the code's hash in the command's folder (its imports are read like a
    file's there: local modules beside it, a manifest above it)."""
    folder = in_workspace(cwd, ".")
    if folder is None:
        return None
    name = f"-c-{hashlib.sha256(code.encode()).hexdigest()[:16]}"
    path = posixpath.join(folder, name) if folder else name
    return RunEntry("python", path, code=code, args=tuple(args), segment=index)


# Python: options that take a separate value, and the ones that end option parsing.
_PY_VALUED = frozenset("WX")


def _python(args: list[str], cwd: str, index: int, typed: str) -> RunEntry | InstallRequest | None:
    i = 0
    while i < len(args):
        word = args[i]
        if word == "-" or not word.startswith("-"):
            break
        if word.startswith("--"):
            i += 2 if word == "--check-hash-based-pycs" else 1
            continue
        letters = word[1:]
        for n, letter in enumerate(letters):
            if letter == "c":
                code = letters[n + 1 :] or (args[i + 1] if i + 1 < len(args) else None)
                return None if code is None else _code_entry(cwd, code, index, args[i + 2 :])
            if letter == "m":
                value = letters[n + 1 :] or (args[i + 1] if i + 1 < len(args) else "")
                rest = args[i + 1 :] if letters[n + 1 :] else args[i + 2 :]
                return _python_module(value, rest, cwd, index, typed)
            if letter in _PY_VALUED:
                i += 0 if letters[n + 1 :] else 1
                break
        i += 1
    if i >= len(args) or args[i] == "-":
        return None
    return _entry("python", cwd, args[i], index, args[i + 1 :])


def _python_module(module: str, rest: list[str], cwd: str, index: int, typed: str) -> RunEntry | InstallRequest | None:
    if module == "pip":
        return pip_command(rest, cwd, index, typed)
    if not re.fullmatch(r"[A-Za-z_][\w.]*", module):
        return None
    return RunEntry("python", cwd, module=module, args=tuple(rest), segment=index)


# Node

_NODE_VALUED = options(
    "-r --require --import --loader --experimental-loader -C --conditions --title --input-type --stack-size --env-file"
)
_NODE_CODE = options("-e --eval -p --print -i --interactive --test -v --version -h")


def _node(args: list[str], cwd: str, index: int) -> RunEntry | None:
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        if args[i] in _NODE_CODE:
            return None
        if args[i] == "--":
            i += 1
            break
        i += 2 if args[i] in _NODE_VALUED else 1
    if i >= len(args) or args[i] == "-":
        return None
    return _entry("node", cwd, args[i], index, args[i + 1 :])


# Go and Java: the runner of the ecosystem replaces what was typed (see ``ExecService``)

_GO_VALUED = options(
    "-C -p -asmflags -buildmode -compiler -gccgoflags -gcflags -installsuffix -ldflags -mod -modfile "
    "-overlay -pgo -pkgdir -tags -toolexec -exec -o"
)


def _go_run(args: list[str], cwd: str, index: int) -> RunEntry | None:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if "=" in args[i]:
            i += 1
        else:
            i += 2 if args[i] in _GO_VALUED else 1
    if i >= len(args):
        return None
    target = args[i]
    if target.endswith(".go"):
        files = [a for a in args[i:] if a.endswith(".go")]
        return _entry("go", cwd, target, index, args[i + len(files) :])
    if EXPANSION.search(target) or "..." in target or not target.startswith((".", "/")):
        return None  # a package pattern or an import path: not one entry in the workspace
    where = in_workspace(cwd, target)
    if where is None:
        return None
    return RunEntry("go", where, package=True, args=tuple(args[i + 1 :]), segment=index)


_JAVA_VALUED = options("-cp -classpath --class-path -p --module-path --add-modules --source")


def _java(args: list[str], cwd: str, index: int) -> RunEntry | None:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in ("-jar", "-m", "--module", "-version", "--version"):
            return None
        i += 2 if args[i] in _JAVA_VALUED else 1
    if i >= len(args) or not args[i].endswith(".java"):
        return None  # a class name: compiled earlier, nothing to prepare
    return _entry("java", cwd, args[i], index, args[i + 1 :])
