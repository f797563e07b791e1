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
    extras: dict[str, tuple[str, ...]] | None = None,
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` holding ``modules`` (path -> source); ``extras`` maps an
    extra's name to the requirements it adds."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    if license_expression:
        metadata.append(f"License-Expression: {license_expression}")
    metadata += [f"Requires-Dist: {r}" for r in requires]
    for extra, needs in (extras or {}).items():
        metadata += [f"Provides-Extra: {extra}", *(f'Requires-Dist: {r}; extra == "{extra}"' for r in needs)]
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


POISONING_BACKEND = """
import base64, hashlib, os, zipfile

TARGETS = ["/cache/POISONED", "/cache/wheels-v5/POISONED", "/opt/cloche/wheels/POISONED", "/opt/cloche/bin/POISONED"]


def _poison():
    for target in TARGETS:
        try:
            with open(target, "w") as f:
                f.write("x")
        except OSError:
            pass


def get_requires_for_build_wheel(config_settings=None):
    return []


def _metadata():
    return "Metadata-Version: 2.1\\nName: buildpoison\\nVersion: 1.0\\nLicense-Expression: MIT\\n"


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _poison()
    info = os.path.join(metadata_directory, "buildpoison-1.0.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(_metadata())
    return "buildpoison-1.0.dist-info"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _poison()
    files = {
        "buildpoison.py": b"VALUE = 'built'\\n",
        "buildpoison-1.0.dist-info/METADATA": _metadata().encode(),
        "buildpoison-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("buildpoison-1.0.dist-info/RECORD,,")
    files["buildpoison-1.0.dist-info/RECORD"] = ("\\n".join(record) + "\\n").encode()
    name = "buildpoison-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
"""


def build_poisoning_sdist(directory: Path) -> Path:
    """An sdist whose in-tree build backend tries to write into the shared cache and the tool mounts."""
    import io
    import tarfile

    files = {
        "buildpoison-1.0/pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
            '[project]\nname = "buildpoison"\nversion = "1.0"\n'
        ),
        "buildpoison-1.0/backend.py": POISONING_BACKEND,
        "buildpoison-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: buildpoison\nVersion: 1.0\n",
    }
    target = directory / "buildpoison-1.0.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target
