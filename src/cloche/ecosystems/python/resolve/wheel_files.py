"""Which import names a wheel provides, read from its zip central directory alone (host side).

A wheel's file list sits at the end of the zip: the end-of-central-directory record (and, for big archives, the
Zip64 records) says where the central directory starts, and the directory lists every member. Reading only that
tail, with HTTP range requests or from a local file, tells what a project ships without downloading it, and
never runs or unpacks anything from it.
"""

from __future__ import annotations

import re
import struct
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

TAIL_BYTES = 65536  # EOCD (22 bytes) + the longest possible zip comment (65535) nearly fits
# A server that ignores Range sends the whole wheel; accept that only for small files.
MAX_FULL_BODY = 32 * 1024 * 1024

# Top-level names that wheels ship by packaging mistake; `import utils` in a script nearly always means a local
# file, so mapping it to whichever sloppy wheel ships one would install junk.
JUNK_NAMES = frozenset(
    {"test", "tests", "doc", "docs", "example", "examples", "benchmark", "benchmarks", "scripts",
     "tools", "utils", "util", "src", "lib", "build", "dist", "bin", "setup", "conftest",
     "__pycache__", "__init__", "__main__", "sample", "samples", "demo", "demos", "wheelhouse"}
)  # fmt: skip

EOCD = struct.Struct("<IHHHHIIH")  # end of central directory record
ZIP64_LOCATOR = struct.Struct("<IIQI")
ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
CD_ENTRY = struct.Struct("<IHHHHHHIIIHHHHHII")

# read(offset, size) -> exactly those bytes of the archive
ReadAt = Callable[[int, int], bytes]


class ZipListingError(Exception):
    """The archive's central directory could not be found or read."""


@dataclass(frozen=True)
class CentralDirectory:
    offset: int
    size: int
    zip64_eocd_offset: int | None  # set when the real offset/size live in the Zip64 record


def find_central_directory(tail: bytes, tail_start: int) -> CentralDirectory:
    """Locate the central directory from the file's last bytes (``tail`` starts at ``tail_start``)."""
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0:
            raise ZipListingError("no end-of-central-directory record in the tail")
        if len(tail) - pos < EOCD.size:
            continue  # the signature inside the last bytes of a comment: too close to the end to be real
        fields = EOCD.unpack_from(tail, pos)
        # The signature bytes can occur inside the comment; the real record's comment ends the file.
        if pos + EOCD.size + fields[7] == len(tail):
            break
    _, _, _, _, _, cd_size, cd_offset, _ = fields
    loc = pos - ZIP64_LOCATOR.size
    if loc >= 0 and tail[loc : loc + 4] == b"PK\x06\x07":
        _, _, eocd64_offset, _ = ZIP64_LOCATOR.unpack_from(tail, loc)
        return CentralDirectory(cd_offset, cd_size, eocd64_offset)
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        raise ZipListingError("Zip64 sizes without a Zip64 locator")
    return CentralDirectory(cd_offset, cd_size, None)


def parse_zip64_eocd(record: bytes) -> tuple[int, int]:
    """(offset, size) of the central directory from a Zip64 end-of-central-directory record."""
    if len(record) < ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
        raise ZipListingError("bad Zip64 end-of-central-directory record")
    fields = ZIP64_EOCD.unpack_from(record)
    return fields[9], fields[8]


def central_directory_names(cd: bytes) -> list[str]:
    names: list[str] = []
    pos = 0
    while pos + CD_ENTRY.size <= len(cd) and cd[pos : pos + 4] == b"PK\x01\x02":
        fields = CD_ENTRY.unpack_from(cd, pos)
        flags, name_len, extra_len, comment_len = fields[3], fields[10], fields[11], fields[12]
        raw = cd[pos + CD_ENTRY.size : pos + CD_ENTRY.size + name_len]
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace"))
        pos += CD_ENTRY.size + name_len + extra_len + comment_len
    if not names:
        raise ZipListingError("empty or unreadable central directory")
    return names


def member_names(tail: bytes, tail_start: int, read_at: ReadAt) -> list[str]:
    """Every member of the archive whose last bytes are ``tail``; ``read_at`` fetches what the tail lacks."""

    def read(offset: int, size: int) -> bytes:
        if tail_start <= offset and offset + size <= tail_start + len(tail):
            return tail[offset - tail_start : offset - tail_start + size]
        body = read_at(offset, size)
        if len(body) != size:
            raise ZipListingError("the central directory runs past the end of the archive")
        return body

    cd = find_central_directory(tail, tail_start)
    offset, size = cd.offset, cd.size
    if cd.zip64_eocd_offset is not None:
        offset, size = parse_zip64_eocd(read(cd.zip64_eocd_offset, ZIP64_EOCD.size))
    return central_directory_names(read(offset, size))


# ---------------------------------------------------------------- over HTTP


def _byte_range(client: httpx.Client, url: str, spec: str) -> tuple[bytes, int]:
    """Body and the absolute offset it starts at, for a Range header value ``spec``."""
    with client.stream("GET", url, headers={"Range": spec}) as response:
        length = int(response.headers.get("content-length") or 0)
        if response.status_code == 200 and length > MAX_FULL_BODY:
            raise ZipListingError(f"{url}: the server ignored Range for a {length}-byte file")
        body = response.read()
    if response.status_code == 200:
        return body, 0
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("content-range", ""))
    if response.status_code != 206 or not match:
        raise ZipListingError(f"{url}: range request answered HTTP {response.status_code}")
    return body, int(match.group(1))


def http_member_names(client: httpx.Client, url: str) -> list[str]:
    """A remote wheel's members, from two or three range requests (httpx errors propagate)."""
    tail, tail_start = _byte_range(client, url, f"bytes=-{TAIL_BYTES}")

    def read_at(offset: int, size: int) -> bytes:
        body, start = _byte_range(client, url, f"bytes={offset}-{offset + size - 1}")
        return body[offset - start : offset - start + size]

    return member_names(tail, tail_start, read_at)


# ---------------------------------------------------------------- which wheel, which names


def _wheel_preference(filename: str) -> int | None:
    """Lower is better; None if not a parseable wheel."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    if any(t.abi == "none" and t.platform == "any" and t.interpreter.startswith("py3") for t in tags):
        return 0
    linux_x86 = any("manylinux" in t.platform and t.platform.endswith("x86_64") for t in tags)
    if linux_x86 and any(t.interpreter == "cp311" or t.abi == "abi3" for t in tags):
        return 1
    if any(t.platform == "any" for t in tags):
        return 2
    return 3 if linux_x86 else 4


def file_platform(f: dict[str, Any]) -> str | None:
    """What one release file (a PyPI JSON ``urls`` entry) runs on: "source" for an sdist, "any" for a pure wheel,
    else the operating system of its platform tags ("Linux", "Windows", "macOS"); None when unknown."""
    if f.get("packagetype") == "sdist":
        return "source"
    try:
        _, _, _, tags = parse_wheel_filename(str(f.get("filename", "")))
    except InvalidWheelFilename:
        return None
    for prefix, system in (("any", "any"), ("win", "Windows"), ("macosx", "macOS"), ("ios", "macOS")):
        if all(t.platform.startswith(prefix) for t in tags):
            return system
    return "Linux" if any("linux" in t.platform for t in tags) else None


def pick_wheel(files: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Of a release's files (PyPI JSON ``urls`` entries), the wheel whose listing speaks for Linux."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for f in files:
        if f.get("packagetype") != "bdist_wheel" or f.get("yanked"):
            continue
        pref = _wheel_preference(str(f.get("filename", "")))
        if pref is not None and (best is None or (pref, f["filename"]) < best[:2]):
            best = (pref, f["filename"], f)
    return best[2] if best else None


def _installed_path(path: str) -> str | None:
    """Where a wheel member lands relative to site-packages, or None if it is not importable."""
    top, _, rest = path.partition("/")
    if top.endswith(".dist-info"):
        return None
    if top.endswith(".data"):
        # purelib/platlib members are installed straight into site-packages like root members;
        # scripts, headers and data are not importable.
        scheme, _, inner = rest.partition("/")
        return inner if scheme in ("purelib", "platlib") and inner else None
    return path


def _module_stem(filename: str) -> str | None:
    """'foo' for foo.py / foo.cpython-311-x86_64-linux-gnu.so / foo.abi3.so / foo.pyd."""
    if filename.endswith(".py"):
        stem = filename[:-3]
    elif filename.endswith((".so", ".pyd")):
        stem, _, tag = filename.rpartition(".")[0].partition(".")
        # An untagged libfoo.so is a bundled shared library, not an extension module.
        if not tag and stem.startswith("lib"):
            return None
    else:
        return None
    return stem if stem.isidentifier() else None


def import_names(paths: Iterable[str]) -> set[str]:
    """Importable names a wheel provides: top-level packages and modules, and for namespace
    packages (no __init__) the dotted path down to the first regular package or module."""
    files: dict[tuple[str, ...], set[str]] = defaultdict(set)
    subdirs: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for raw in paths:
        path = _installed_path(raw.lstrip("/"))
        if path is None or path.endswith("/"):
            continue
        parts = tuple(path.split("/"))
        if any(not p.isidentifier() or p in JUNK_NAMES for p in parts[:-1]):
            continue  # inside e.g. foo.libs/, tests/ or ../ (RECORD): never importable as a name
        files[parts[:-1]].add(parts[-1])
        for i in range(len(parts) - 1):
            subdirs[parts[:i]].add(parts[i])

    found: set[str] = set()

    def visit(prefix: tuple[str, ...]) -> None:
        stems = {s for s in map(_module_stem, files.get(prefix, ())) if s}
        if prefix and "__init__" in stems:
            found.add(".".join(prefix))
            return
        found.update(".".join((*prefix, s)) for s in stems if s not in JUNK_NAMES)
        for sub in sorted(subdirs.get(prefix, ())):
            visit((*prefix, sub))

    visit(())
    return found


def provides(names: Iterable[str], module: str) -> bool:
    """Whether a wheel providing ``names`` makes ``module`` importable (a dotted prefix either way counts:
    'google.cloud.storage' covers 'google.cloud.storage.blob', and 'ruamel.yaml' covers 'ruamel')."""
    return any(module == name or module.startswith(name + ".") or name.startswith(module + ".") for name in names)
