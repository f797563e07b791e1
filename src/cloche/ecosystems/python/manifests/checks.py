"""What every Python manifest reader shares: reading a manifest safely, and checking that a requirement
names a registry package (URLs, VCS, local paths are refused with the file and line)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from cloche.errors import InvalidPath, InvalidRequest, Unsupported
from cloche.store import safefs

MAX_MANIFEST_BYTES = 1024 * 1024
REGISTRY_ONLY = "cloche installs only from the official registry (PyPI)"


def where_at(path: str, line: int | None) -> str:
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


def decode(data: bytes, path: str) -> str:
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
        why = not_registry(req.url) or "installs from a URL"
        raise Unsupported(f"{where}: {text!r} {why}; {REGISTRY_ONLY}: name a released version")
    return text


def not_registry(spec: str) -> str | None:
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


def line_of(text: str, needle: str) -> int | None:
    """First line mentioning ``needle``: TOML parsers do not keep positions."""
    at = text.find(needle)
    return None if at < 0 else text.count("\n", 0, at) + 1


def check_specifier(text: str, where: str) -> str:
    try:
        SpecifierSet(text)
    except InvalidSpecifier as e:
        raise InvalidRequest(f"{where}: {text!r} is not a valid version specifier") from e
    return text
