"""Tiny real wheels built at test time, so install tests need no registry."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(
    directory: Path,
    name: str,
    version: str,
    modules: dict[str, str],
    *,
    requires: tuple[str, ...] = (),
    license_expression: str | None = "MIT",
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` holding ``modules`` (path -> source)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    if license_expression:
        metadata.append(f"License-Expression: {license_expression}")
    metadata += [f"Requires-Dist: {r}" for r in requires]
    files = {path: source.encode() for path, source in modules.items()}
    files[f"{info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: cloche-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [_record_line(path, data) for path, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    target = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return target


def standard_wheels(directory: Path) -> Path:
    """A small local index: two six versions, a package with a dependency, and attrs under its import name."""
    directory.mkdir(parents=True, exist_ok=True)
    for version in ("1.15.0", "1.16.0"):
        build_wheel(directory, "six", version, {"six.py": f"__version__ = '{version}'\n"})
    build_wheel(directory, "attrs", "23.2.0", {"attr/__init__.py": "VERSION = 'attrs'\n"})
    build_wheel(
        directory,
        "requests",
        "2.31.0",
        {"requests/__init__.py": "import idna\n__version__ = '2.31.0'\n"},
        requires=("idna>=3",),
        license_expression="Apache-2.0",
    )
    build_wheel(directory, "idna", "3.6", {"idna/__init__.py": "X = 1\n"}, license_expression="BSD-3-Clause")
    build_wheel(directory, "PyYAML", "6.0.1", {"yaml/__init__.py": "def safe_load(s):\n    return {'k': s}\n"})
    return directory
