"""Small helpers the ecosystems share: workspace reads through safefs, fingerprints, running an installer
(its error text), where local package sources appear inside install jails, and staging scripts jails bind."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import secrets
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import unquote, urlsplit

from cloche.ecosystems.base import Ecosystem, InstallFailed, InstallJail, InstallRunOptions, Quirk
from cloche.errors import ClocheError, InvalidRequest
from cloche.jail.profile import Mount
from cloche.jail.runner import RunResult
from cloche.store import safefs

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_SOURCE_BYTES = 1024 * 1024
MAX_SOURCE_FILES = 2000
# Folders no language's sources live in, and which can be huge: never entered while looking for sources.
SKIPPED_DIRS = frozenset({".cloche", ".git", "node_modules", "vendor", "target", "build", ".gradle", "testdata"})
LOCAL_SOURCES = "/opt/cloche/sources"  # where a file:// registry fixture appears in install jails
# Where environments are bound, one folder per ecosystem: outside the workspace (/sandbox), so no file or folder
# a user makes can ever be hidden by an environment mount, nor hide one.
ENV_ROOT = "/opt/cloche/env"
JAIL_PYTHON = "/usr/bin/python3"  # the system interpreter every jail sees: it runs the ecosystems' own scripts


def dirs_up(entry: str) -> list[str]:
    """The entry's directory, its parents, ..., '' (the workspace root)."""
    dirs = [posixpath.dirname(entry)]
    while dirs[-1]:
        dirs.append(posixpath.dirname(dirs[-1]))
    return dirs


def join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def present(root: Path, rel: str) -> bool:
    """Any kind of entry counts, so a planted symlink is refused when read rather than skipped."""
    try:
        return safefs.lookup(root, rel) is not None
    except (ClocheError, OSError):
        return False


def find_up(root: Path, entry: str, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(directory, name) of the first of ``names`` in the entry's folder or a parent up to the root."""
    for base in dirs_up(entry):
        for name in names:
            if present(root, join(base, name)):
                return base, name
    return None


def read_text(root: Path, rel: str, max_bytes: int = MAX_MANIFEST_BYTES) -> str:
    data = safefs.read_file(root, rel, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"{rel} is not valid UTF-8 (byte {e.start})") from e


def source_files(root: Path, base: str, suffix: str, limit: int = MAX_SOURCE_FILES) -> list[str]:
    """Regular files ending in ``suffix`` below ``base`` (workspace-relative), skipping build and
    dependency folders and dot-folders; at most ``limit`` of them, in path order."""

    def prune(rel: str) -> bool:
        name = posixpath.basename(rel)
        return name in SKIPPED_DIRS or name.startswith((".", "_"))

    try:
        entries = safefs.list_dir(root, base, with_sha256=False, prune=prune, max_entries=50_000)
    except (ClocheError, OSError):
        return []
    found = [e.path for e in entries if e.type == "file" and e.path.endswith(suffix)]
    return sorted(found)[:limit]


def fingerprint(canonical: Mapping[str, Any]) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def detection_fingerprint(format_version: int, source: str, inputs: Mapping[str, Any]) -> str:
    """A detection's fingerprint: the hash of its record format, its source and exactly the inputs that decide
    the install (nothing advisory), so an unchanged fingerprint can skip straight to the built environment."""
    return fingerprint({"format": format_version, "source": source, **inputs})


def shown_fields(record: Any, names: Sequence[str]) -> dict[str, Any]:
    """``record``'s fields ``names`` as JSON values (tuples as lists): what a detection's ``to_dict`` shows."""
    return {name: list(value) if isinstance(value := getattr(record, name), tuple) else value for name in names}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def installer_error(result: RunResult, limit: int = 30) -> str:
    """The installer's last lines (they name the package that failed), without blank noise, then how it ended when
    that was not a plain error exit: a limit or a signal leaves no message of the installer's own."""
    lines = [line for line in (result.stderr or result.output).strip().splitlines() if line.strip()]
    ending = _installer_ending(result)
    return "\n".join([*lines[-limit:], *([ending] if ending else [])]) or "the installer failed without a message"


# Signals an installer dies of, and what usually sent them.
_SIGNAL_CAUSES = {
    signal.SIGXFSZ: "a file larger than the install jails' file-size limit (CLOCHE_INSTALL_MAX_FILE_MB)",
    signal.SIGKILL: "usually the install jail's memory limit (CLOCHE_INSTALL_MEMORY_MB)",
    signal.SIGSEGV: "a crash in native code",
}


def _installer_ending(result: RunResult) -> str | None:
    if result.status == "timed_out":
        return f"the installer ran out of time after {result.duration_ms / 1000:.0f} s"
    if result.status == "oom_killed":
        return "the installer ran out of memory (CLOCHE_INSTALL_MEMORY_MB)"
    if result.status == "output_limit":
        return "the installer's output reached its cap and it was stopped"
    if result.status == "killed":
        return "the installer was killed"
    code = result.exit_code
    if code is None or code <= 128:
        return None
    try:
        died_of = signal.Signals(code - 128)
    except ValueError:
        return None
    cause = _SIGNAL_CAUSES.get(died_of)
    return f"the installer was killed by {died_of.name}" + (f": {cause}" if cause else "")


async def run_installer(jail: InstallJail, argv: Sequence[str], **options: Unpack[InstallRunOptions]) -> RunResult:
    """One installer step in ``jail``; a failure raises ``InstallFailed`` with the installer's last lines."""
    result = await jail.run(argv, **options)
    if result.status != "succeeded":
        raise InstallFailed(installer_error(result))
    return result


def local_source(url: str) -> Path | None:
    """The host folder of a ``file://`` registry URL (tests, offline mirrors), else None."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.path))


@dataclass(frozen=True)
class PackageSource:
    """Where an ecosystem's packages come from: a registry's URL, or a ``file://`` folder (tests, offline mirrors)
    that jails see at ``LOCAL_SOURCES/<kind>``."""

    url: str
    kind: str  # "npm", "go", "maven": the folder's name under LOCAL_SOURCES

    @property
    def mounts(self) -> tuple[Mount, ...]:
        """The folder's read-only mount, when the source is one."""
        folder = local_source(self.url)
        return (Mount("ro-bind", f"{LOCAL_SOURCES}/{self.kind}", folder),) if folder is not None else ()

    @property
    def jail_url(self) -> str:
        """The URL as a jail sees it."""
        return f"file://{LOCAL_SOURCES}/{self.kind}" if self.mounts else self.url.rstrip("/")


def strip_comments(text: str, *, mask_strings: bool = False) -> str:
    """``text`` with // and /* */ comments blanked (newlines kept, so offsets and line numbers stay right).

    With ``mask_strings`` the contents of string literals are blanked too (to 'x'), quotes kept: patterns
    matched on that text cannot fire inside a string, and the real text sits at the same offsets.

    For the C-like languages (JavaScript, Go, Java): quotes, backquotes (JavaScript templates, Go raw
    strings) and Java text blocks' quotes are skipped as strings; JavaScript regular-expression literals
    are not recognised, which only matters for a regex holding a quote or comment opener.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while j < n and text[j] != c and not (c != "`" and text[j] == "\n"):
                j += 2 if text[j] == "\\" else 1
            literal = text[i : j + 1]
            if mask_strings and len(literal) > 2:
                inner = "".join(ch if ch == "\n" else "x" for ch in literal[1:-1])
                literal = literal[0] + inner + literal[-1]
            out.append(literal)
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def traversable(path: Path) -> bool:
    """True when any uid may reach ``path``: every ancestor searchable by others (bwrap binds a path as
    the jail's uid, so a toolchain below a checkout in /root is out of its reach)."""
    try:
        return all(parent.stat().st_mode & 0o001 for parent in path.parents) and bool(path.stat().st_mode & 0o004)
    except OSError:
        return False


def _link_or_copy(source: str, target: str) -> None:
    # Hard links make staging a 250 MB toolchain instant; across file systems fall back to a copy.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def reachable(source: Path, stage: Path) -> Path:
    """``source`` (a file or folder) where jails can bind it: itself when traversable, else a copy at ``stage``
    (refreshed when the source's size or mtime changes; replaced in one rename, so readers never see half)."""
    if traversable(source):
        return source
    st = source.stat()
    marker = f"{source}:{st.st_size}:{st.st_mtime_ns}\n"
    stamp = stage.parent / f".{stage.name}.source"
    if stage.exists() and stamp.exists() and stamp.read_text() == marker:
        return stage
    stage.parent.mkdir(parents=True, exist_ok=True)
    stage.parent.chmod(0o755)
    temp = stage.parent / f".{stage.name}.{secrets.token_hex(4)}"
    if source.is_dir():
        shutil.copytree(source, temp, copy_function=_link_or_copy, symlinks=True)
        temp.chmod(0o755)
    else:
        shutil.copy2(source, temp)
        temp.chmod(0o755 if st.st_mode & 0o111 else 0o644)  # a staged script stays executable
    if stage.is_dir() and not stage.is_symlink():
        shutil.rmtree(stage)
    os.replace(temp, stage)
    stamp.write_text(marker)
    return stage


def staged_mount(source: Path, dest: str, stage: Path | None, name: str) -> Mount:
    """A read-only mount of ``source`` at ``dest``, staged as ``stage/name`` when jails cannot reach it."""
    return Mount("ro-bind", dest, reachable(source, stage / name) if stage is not None else source)


@dataclass(frozen=True)
class JailScripts:
    """An ecosystem's own scripts (its runner, installer helpers, command shims) as jails see them:
    ``folder/<name>`` on the host is ``tools/<name>`` in a jail, bound from a copy under ``stage`` when jails
    cannot reach it."""

    folder: Path
    tools: str
    stage: Path | None
    prefix: str  # the staged copies' name prefix: the ecosystem's name

    def mount(self, name: str) -> Mount:
        return staged_mount(self.folder / name, f"{self.tools}/{name}", self.stage, f"{self.prefix}-{name}")

    def argv(self, name: str, *args: str) -> list[str]:
        """The command that runs the Python script ``name`` in a jail (the system interpreter, isolated mode)."""
        return [JAIL_PYTHON, "-I", f"{self.tools}/{name}", *args]


class RunnerEcosystem(Ecosystem):
    """A language whose entries its own runner script (``run.py``) builds against the environment and runs
    (Go, Java): the environment carries the toolchain's own files even when nothing is requested, and a typed
    ``go run .`` or ``java Main.java`` is replaced by the runner."""

    quirks = frozenset({Quirk.ENVIRONMENT_WITHOUT_PACKAGES, Quirk.RUNS_THROUGH_ITS_RUNNER})
    scripts: JailScripts  # set by the subclass: where ``run.py`` and its other scripts are

    def command(self, entry: str, args: list[str]) -> list[str]:
        return self.scripts.argv("run.py", entry, *args)
