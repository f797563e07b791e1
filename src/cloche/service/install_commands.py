"""Package installs typed as commands (``pip install x``, ``npm i x``): what is asked, what cannot be honoured.

Pure: reads no files. The server performs these installs itself, through the environment store and the same
checks as any other install (see ``ExecService``); nothing runs a package manager in the sandbox's jail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cloche.service.command_lexer import EXPANSION, in_workspace, options

_INDEX = "packages come only from the server's configured index"
_HERE = "packages go into the sandbox's environment"


@dataclass(frozen=True)
class InstallRequest:
    """Packages one simple command asks to install (or remove)."""

    ecosystem: Literal["python", "node"]
    requirements: tuple[str, ...] = ()  # as typed: "humanize", "x==1.2", "left-pad@1.3.0"
    requirement_files: tuple[str, ...] = ()  # workspace-relative (-r), Python only
    constraint_files: tuple[str, ...] = ()  # workspace-relative (-c), Python only
    remove: bool = False  # pip uninstall
    refused: tuple[str, ...] = ()  # what the server will not do, each with its reason: nothing is installed
    notes: tuple[str, ...] = ()  # options that change nothing here (--user, -q, -U, -e .), with why
    typed: str = ""  # the simple command as typed, for messages
    segment: int = 0


@dataclass
class _Asked:
    """What an install command's words ask, gathered word by word (pip's and npm's alike)."""

    names: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def package(self, word: str, named: bool, kind: str) -> None:
        """``word`` to install when it ``named`` a package, else refused: only ``kind`` come from the registry."""
        if named:
            self.names.append(word)
        else:
            self.refused.append(f"{word}: only {kind} (with versions) are installed, not files or URLs")

    def __bool__(self) -> bool:
        return bool(self.names or self.files or self.refused or self.notes)

    def request(self, ecosystem: Literal["python", "node"], typed: str, segment: int) -> InstallRequest:
        return InstallRequest(
            ecosystem,
            tuple(self.names),
            tuple(self.files),
            tuple(self.constraints),
            refused=tuple(self.refused),
            notes=tuple(self.notes),
            typed=typed,
            segment=segment,
        )


# pip: options by what the server does with them. Unlisted flags are ignored (they take no value).
_PIP_GLOBAL_VALUED = options(
    "--log --timeout --retries --cache-dir --proxy --python --exists-action --cert --client-cert "
    "--progress-bar --root-user-action --use-feature --use-deprecated"
)
_PIP_IGNORED_VALUED = options(
    "--upgrade-strategy --only-binary --no-binary --progress-bar --python --root-user-action --platform "
    "--python-version --implementation --abi --cache-dir --timeout --retries --log --exists-action "
    "--optional --group --dev-group --package --color --extra --src"
)
_PIP_REFUSED_VALUED = {
    "-i": _INDEX,
    "--index-url": _INDEX,
    "--extra-index-url": _INDEX,
    "--index": _INDEX,
    "--default-index": _INDEX,
    "-f": _INDEX,
    "--find-links": _INDEX,
    "--trusted-host": _INDEX,
    "-t": f"{_HERE}, not a target folder",
    "--target": f"{_HERE}, not a target folder",
    "--prefix": f"{_HERE}, not a prefix",
    "--root": f"{_HERE}, not another root",
}
# Flags that change nothing in the sandbox and need no word about it.
_PIP_SILENT = options(
    "-q --quiet -v --verbose -U --upgrade --no-cache-dir --disable-pip-version-check --no-input -y --yes "
    "--break-system-packages --no-warn-script-location --prefer-binary --no-color --dev"
)
_REQUIREMENT_FILE = ("-r", "--requirement", "--requirements")
_CONSTRAINT_FILE = ("-c", "--constraint", "--constraints")
_EDITABLE = ("-e", "--editable")


def pip_command(args: list[str], cwd: str, index: int, typed: str) -> InstallRequest | None:
    """``pip [global options] install|uninstall ...``; other subcommands (list, show, freeze) are not installs."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in _PIP_GLOBAL_VALUED else 1
    command, rest = (args[i], args[i + 1 :]) if i < len(args) else ("", [])
    if command == "install":
        return pip_install(rest, cwd, index, typed)
    if command == "uninstall":
        return pip_uninstall(rest, index, typed)
    return None


def pip_install(args: list[str], cwd: str, index: int, typed: str) -> InstallRequest | None:
    """The arguments of ``pip install`` (also ``uv pip install`` and ``uv add``)."""
    asked = _Asked()
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("-") or word == "-":
            named = not (EXPANSION.search(word.split(";")[0].split("[")[0]) or _not_a_name(word))
            asked.package(word, named, "distribution names")
            i += 1
            continue
        option, attached = _split_option(word)
        value = attached if attached is not None else (args[i + 1] if i + 1 < len(args) else "")
        step = 1 if attached is not None else 2
        if option in _REQUIREMENT_FILE + _CONSTRAINT_FILE:
            where = in_workspace(cwd, value) if value and not EXPANSION.search(value) else None
            if where is None:
                asked.refused.append(f"{option} {value}: the file must be a literal path inside the workspace")
            else:
                (asked.files if option in _REQUIREMENT_FILE else asked.constraints).append(where)
        elif option in _EDITABLE:
            asked.notes.append(
                f"{option} {value}: not needed, the workspace is already importable and its declared "
                "dependencies install when its code runs"
            )
        elif option in _PIP_REFUSED_VALUED:
            asked.refused.append(f"{option} {value}: {_PIP_REFUSED_VALUED[option]}")
        elif option in _PIP_IGNORED_VALUED:
            asked.notes.append(f"{option} {value}: ignored")
        else:
            if option not in _PIP_SILENT and not (len(word) > 2 and set(word[1:]) <= {"q", "v", "U"}):
                asked.notes.append(f"{word}: ignored")
            step = 1
        i += step
    return asked.request("python", typed, index) if asked else None


def _split_option(word: str) -> tuple[str, str | None]:
    """("--index-url", "x") for "--index-url=x"; ("-r", "req.txt") for "-rreq.txt"; (word, None) otherwise."""
    if word.startswith("--"):
        option, sep, value = word.partition("=")
        return option, (value if sep else None)
    if len(word) > 2 and word[:2] in ("-r", "-c", "-e", "-i", "-f", "-t"):
        return word[:2], word[2:]
    return word, None


def _not_a_name(word: str) -> bool:
    """A path, archive, URL or VCS reference rather than a registry name."""
    return (
        word.startswith((".", "/", "~"))
        or "://" in word
        or " @ " in word
        or word.endswith((".whl", ".tar.gz", ".zip", ".tgz"))
        or word.startswith(("git+", "hg+", "svn+", "bzr+", "file:", "link:", "github:"))
    )


def pip_uninstall(args: list[str], index: int, typed: str) -> InstallRequest | None:
    names = tuple(w for w in args if not w.startswith("-"))
    return InstallRequest("python", names, remove=True, typed=typed, segment=index) if names else None


# npm, pnpm and yarn: the subcommands that add packages.
_NPM_INSTALL = {
    "npm": ("install", "i", "add", "isntall", "in", "ins"),
    "pnpm": ("add", "install", "i"),
    "yarn": ("add",),
}
_NPM_SILENT = options("-D --save-dev -S --save -E --save-exact -O --save-optional -P --save-prod --no-fund --no-audit")
_NPM_VALUED = frozenset("--prefix -C --workspace -w --tag --omit --include".split())  # noqa: SIM905


def npm_install(head: str, args: list[str], index: int, typed: str) -> InstallRequest | None:
    """``npm install [names]``; a bare ``npm install`` is the server's too (package.json installs for every run)."""
    if not args or args[0] not in _NPM_INSTALL[head]:
        return None
    asked = _Asked()
    i = 1
    while i < len(args):
        word = args[i]
        if word == "--registry" or word.startswith("--registry="):
            asked.refused.append(f"{word}: packages come only from the server's configured registry")
            i += 1 if "=" in word else 2
        elif word.startswith("-"):
            if word not in _NPM_SILENT:
                asked.notes.append(f"{word}: ignored")
            i += 2 if word in _NPM_VALUED else 1
        else:
            bare = word[1:] if word.startswith("@") else word
            named = not (EXPANSION.search(bare.split("@")[0]) or _not_a_name(word) or ":" in bare)
            asked.package(word, named, "registry packages")
            i += 1
    return asked.request("node", typed, index)
