"""Reading uv's pinned output (``name==version`` lines with ``--hash`` options) and installed metadata."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from cloche.ecosystems.base import Component, InstallFailed
from cloche.errors import ClocheError
from cloche.sbom.licenses import normalize_license
from cloche.store import safefs

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")
HASH = re.compile(r"--hash=([a-z0-9]+:[0-9a-f]+)")
MAX_METADATA = 4 * 1024 * 1024


def parse_lock(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, version, hashes) per pinned requirement, in lock order."""
    pins: list[tuple[str, str, tuple[str, ...]]] = []
    # Join continuation lines so each requirement and its hashes are one logical line.
    for line in text.replace("\\\n", " ").splitlines():
        match = PIN.match(line.strip())
        if match:
            pins.append((match.group(1), match.group(3), tuple(HASH.findall(line))))
    return pins


def installed_licenses(site_packages: Path) -> dict[str, str | None]:
    """Normalised name -> license, read from each ``*.dist-info/METADATA`` without following links."""
    found: dict[str, str | None] = {}
    try:
        # Top level only; the entries are checked again by safefs when read (no link is followed).
        names = [e.name for e in os.scandir(site_packages) if e.name.endswith(".dist-info")]
    except OSError:
        return found
    for name in names:
        entry = f"{name}/METADATA"
        try:
            raw = safefs.read_file(site_packages, entry, max_bytes=MAX_METADATA)
        except ClocheError:
            continue
        message = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
        dist = message.get("Name")
        if dist:
            found[canonicalize_name(dist)] = normalize_license(
                message.get("License-Expression"), message.get("License"), list(message.get_all("Classifier") or [])
            )
    return found


def components(lock_text: str, site_packages: Path | None, provenance: str) -> list[Component]:
    licenses = installed_licenses(site_packages) if site_packages is not None else {}
    return [
        Component(
            name=name,
            version=version,
            purl=f"pkg:pypi/{canonicalize_name(name)}@{version}",
            license=licenses.get(canonicalize_name(name)),
            hashes=hashes,
            provenance=provenance,
        )
        for name, version, hashes in parse_lock(lock_text)
    ]


def enforce_declared_hashes(lock_text: str, requested: Sequence[str]) -> str:
    """Narrow the lock to the hashes a requirements file declared (``pkg==1.0 --hash=sha256:...``).

    ``uv pip compile`` does not check input hashes; the install runs with ``--require-hashes`` against the lock,
    so keeping only the declared ones makes the user's pins binding. No overlap at all is a refusal.
    """
    declared: dict[str, set[str]] = {}
    for line in requested:
        hashes = HASH.findall(line)
        match = PIN.match(line.strip())
        name = match.group(1) if match else re.split(r"[\s<>=!~;\[]", line.strip(), maxsplit=1)[0]
        if hashes and name:
            declared.setdefault(canonicalize_name(name), set()).update(hashes)
    if not declared:
        return lock_text
    out: list[str] = []
    for block in lock_text.replace("\\\n", "\x00").splitlines():
        match = PIN.match(block.strip())
        wanted = declared.get(canonicalize_name(match.group(1))) if match else None
        if match and wanted is not None:
            kept = [h for h in HASH.findall(block) if h in wanted]
            if not kept:
                raise InstallFailed(
                    f"{match.group(1)}=={match.group(3)}: none of the hashes declared for it matches a file on the "
                    "index (hash mismatch)"
                )
            block = f"{match.group(1)}{match.group(2) or ''}=={match.group(3)}" + "".join(
                f" \x00    --hash={h}" for h in kept
            )
        out.append(block)
    return "\n".join(out).replace("\x00", "\\\n") + "\n"
