"""Extract user-uploaded zip and tar archives into a workspace without trusting them.

Three passes: read every member header and refuse the whole archive for any bad path, link,
device, size or clash with the workspace; decompress everything once more, counting the real
bytes, so a header that lies about sizes also rejects the archive; only then write, each file
through ``safefs.write_file``. A rejected archive therefore writes nothing. Only races with
code running in the sandbox, or the disk filling up, can leave a partial extraction.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, BinaryIO, Literal

from cloche.errors import InvalidArchive, InvalidPath, TooLarge
from cloche.store import safefs
from cloche.store.safefs import FileInfo

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_CHUNK = 1 << 20
# Tar headers, pax records and padding on top of member data that one member may need.
_TAR_OVERHEAD_PER_MEMBER = 16 * 1024
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
)

_Kind = Literal["zip", "tar", "gz", "bz2", "xz"]


@dataclass(frozen=True, slots=True)
class _Limits:
    members: int
    total: int
    member: int


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str  # as spelt in the archive, for error messages
    path: str  # validated, relative to the workspace root
    is_dir: bool
    size: int
    mode: int


class _Plan:
    """Members checked so far, in archive order (None for entries that name ``dest`` itself)."""

    def __init__(self, base: PurePosixPath, limits: _Limits) -> None:
        self.base, self.limits = base, limits
        self.entries: list[_Entry | None] = []
        self.total = 0
        self.files: set[str] = set()
        self.dirs: set[str] = set()

    def add(self, name: str, *, is_dir: bool, size: int, unix_mode: int) -> None:
        if len(self.entries) >= self.limits.members:
            raise TooLarge(f"the archive has more than {self.limits.members} members")
        if size > self.limits.member:
            raise TooLarge(f"member {name!r} is {size} bytes; the limit per file is {self.limits.member}")
        self.total += size
        if self.total > self.limits.total:
            raise TooLarge(f"the archive expands to more than {self.limits.total} bytes (at member {name!r})")
        try:
            rel = safefs.validate_relpath(name, allow_root=is_dir)
            path = safefs.validate_relpath(str(self.base / rel), allow_root=is_dir)
        except InvalidPath as e:
            raise InvalidArchive(f"member {name!r}: {e.message}") from e
        key = str(path)
        parents = [str(p) for p in path.parents if str(p) != "."]
        if key == "." or (is_dir and key in self.dirs):
            self.entries.append(None)
            return
        if key in self.files:
            clash = "needs a path to be both a file and a directory" if is_dir else "appears more than once"
            raise InvalidArchive(f"member {name!r} {clash}")
        if any(p in self.files for p in parents) or (not is_dir and key in self.dirs):
            raise InvalidArchive(f"member {name!r} needs a path to be both a file and a directory")
        self.dirs.update(parents)
        (self.dirs if is_dir else self.files).add(key)
        mode = 0o755 if is_dir or unix_mode & 0o100 else 0o644
        self.entries.append(_Entry(name, key, is_dir, size, mode))

    def check_workspace(self, root: Path) -> None:
        """Refuse clashes with what the workspace already holds, before anything is written."""
        for path in sorted(self.dirs):  # parents first, so the shallowest clash is named
            found = _lookup(root, path)
            if found is not None and found.type != "dir":
                raise InvalidArchive(f"{path!r} is a {found.type} in the workspace; the archive needs a directory")
        for path in sorted(self.files):
            found = _lookup(root, path)
            if found is not None and found.type == "dir":
                raise InvalidArchive(f"{path!r} is a directory in the workspace; the archive has a file there")


def _lookup(root: Path, path: str) -> FileInfo | None:
    try:
        return safefs.lookup(root, path)
    except InvalidPath as e:
        raise InvalidArchive(f"cannot extract to {path!r}: {e.message}") from e


def extract_archive(
    root: Path,
    data: BinaryIO | Path,
    *,
    dest: str = "",
    uid: int,
    gid: int,
    max_members: int,
    max_total_bytes: int,
    max_member_bytes: int,
) -> list[FileInfo]:
    """Extract a zip or tar (plain, gz, bz2, xz; detected by content) under ``dest``.

    Returns what was written (files and the directories the archive lists), in archive order.
    """
    limits = _Limits(max_members, max_total_bytes, max_member_bytes)
    base = safefs.validate_relpath(dest, allow_root=True) if dest else PurePosixPath(".")
    if isinstance(data, Path):
        with data.open("rb") as fh:
            return _extract(root, fh, base, uid, gid, limits)
    return _extract(root, data, base, uid, gid, limits)


def _extract(root: Path, fh: BinaryIO, base: PurePosixPath, uid: int, gid: int, limits: _Limits) -> list[FileInfo]:
    if not fh.seekable():
        raise InvalidArchive("the archive must be given as a seekable file")
    fh.seek(0)
    kind = _sniff(fh.read(512))
    fh.seek(0)
    plan = _Plan(base, limits)
    if kind == "zip":
        return _extract_zip(root, fh, plan, uid, gid)
    return _extract_tar(root, fh, kind, plan, uid, gid)


def _sniff(head: bytes) -> _Kind:
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gz"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    raise InvalidArchive("not a zip or tar archive (accepted: zip, tar, tar.gz, tar.bz2, tar.xz)")


def _write(root: Path, entry: _Entry, src: IO[bytes] | None, uid: int, gid: int) -> FileInfo:
    if entry.is_dir:
        return safefs.make_dir(root, entry.path, uid=uid, gid=gid)
    if src is None:
        raise InvalidArchive(f"member {entry.name!r} has no readable data")
    with src:
        return safefs.write_file(root, entry.path, src, uid=uid, gid=gid, mode=entry.mode, max_bytes=entry.size)


def _extract_zip(root: Path, fh: BinaryIO, plan: _Plan, uid: int, gid: int) -> list[FileInfo]:
    try:
        with zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            if len(infos) > plan.limits.members:
                raise TooLarge(f"the archive has {len(infos)} members; the limit is {plan.limits.members}")
            for info in infos:
                # The name as stored: zipfile cuts ``filename`` at a NUL, which would write another path.
                name = info.orig_filename
                if info.flag_bits & 0x1:
                    raise InvalidArchive(f"member {name!r} is encrypted")
                # The high 16 bits carry a Unix st_mode when the archiver recorded one; any
                # type but file or directory (symlink, device, FIFO, socket) is refused.
                unix_mode = info.external_attr >> 16
                if stat.S_IFMT(unix_mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise InvalidArchive(
                        f"member {name!r} is {_mode_kind(unix_mode)}; only files and directories are allowed"
                    )
                plan.add(name, is_dir=info.is_dir(), size=info.file_size, unix_mode=unix_mode)
            plan.check_workspace(root)
            # Dry run: decompress every member, so lying sizes or bad CRCs reject the archive now.
            actual = 0
            for info in infos:
                if not info.is_dir():
                    with zf.open(info) as src:
                        actual += _drain(src, info.filename, info.file_size)
                    if actual > plan.limits.total:
                        raise TooLarge(f"the archive expands to more than {plan.limits.total} bytes")
            return [
                _write(root, entry, None if entry.is_dir else zf.open(info), uid, gid)
                for info, entry in zip(infos, plan.entries, strict=True)
                if entry is not None
            ]
    except _ZIP_ERRORS as e:
        raise InvalidArchive(f"the zip archive is damaged or uses an unsupported feature: {e}") from e


def _drain(src: IO[bytes], name: str, declared: int) -> int:
    count = 0
    while chunk := src.read(_CHUNK):
        count += len(chunk)
        if count > declared:
            raise TooLarge(f"member {name!r} expands beyond the {declared} bytes its header declares")
    if count != declared:
        raise InvalidArchive(f"member {name!r} holds {count} bytes but its header declares {declared}")
    return count


def _mode_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "an unknown file type"


def _tar_is_dir(member: tarfile.TarInfo) -> bool:
    if member.issparse():
        raise InvalidArchive(f"member {member.name!r} is a sparse file, which is not supported")
    if member.isreg():
        return False
    if member.isdir():
        return True
    if member.issym():
        what = f"a symlink (to {member.linkname!r})"
    elif member.islnk():
        what = f"a hardlink (to {member.linkname!r})"
    elif member.ischr() or member.isblk():
        what = "a device"
    elif member.isfifo():
        what = "a FIFO"
    else:
        what = f"an unsupported entry (type {member.type!r})"
    raise InvalidArchive(f"member {member.name!r} is {what}; only files and directories are allowed")


class _Counted(io.RawIOBase):
    """Decompressed tar stream that raises TooLarge past ``budget`` bytes.

    It sits under tarfile, so it also bounds what headers can make tarfile read (a pax record
    or GNU long name declaring gigabytes is read into memory by tarfile itself).
    """

    def __init__(self, inner: safefs.SupportsRead, budget: int) -> None:
        self.inner, self.budget, self.count = inner, budget, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.inner.read(len(view))
        self.count += len(data)
        if self.count > self.budget:
            raise TooLarge(f"the archive expands to more than {self.budget} bytes")
        view[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _open_tar(fh: BinaryIO, kind: _Kind, limits: _Limits) -> Iterator[tarfile.TarFile]:
    fh.seek(0)
    budget = limits.total + (limits.members + 4) * _TAR_OVERHEAD_PER_MEMBER
    with contextlib.ExitStack() as stack:
        raw: safefs.SupportsRead = fh
        if kind == "gz":
            raw = stack.enter_context(gzip.GzipFile(fileobj=fh, mode="rb"))
        elif kind == "bz2":
            raw = stack.enter_context(bz2.BZ2File(fh))
        elif kind == "xz":
            raw = stack.enter_context(lzma.LZMAFile(fh))
        # Stream mode ("r|"): strictly sequential, so the counter sees every byte exactly once.
        yield stack.enter_context(tarfile.open(fileobj=io.BufferedReader(_Counted(raw, budget)), mode="r|"))


def _extract_tar(root: Path, fh: BinaryIO, kind: _Kind, plan: _Plan, uid: int, gid: int) -> list[FileInfo]:
    try:
        # Pass 1 reads headers and skips data by reading it: tar sizes cannot lie (the next
        # header sits right after the data), so this also proves the real sizes and stream.
        with _open_tar(fh, kind, plan.limits) as tf:
            for member in tf:
                is_dir = _tar_is_dir(member)
                plan.add(member.name, is_dir=is_dir, size=0 if is_dir else member.size, unix_mode=member.mode)
    except (*_TAR_ERRORS, OSError) as e:  # gzip/bz2 report corrupt streams as OSError
        raise InvalidArchive(f"the tar archive is damaged or unreadable: {e}") from e
    plan.check_workspace(root)
    written: list[FileInfo] = []
    try:
        with _open_tar(fh, kind, plan.limits) as tf:
            for member, entry in zip(tf, plan.entries, strict=True):
                if entry is not None:
                    written.append(_write(root, entry, None if entry.is_dir else tf.extractfile(member), uid, gid))
    except (*_TAR_ERRORS, ValueError) as e:
        raise InvalidArchive(f"the tar archive changed or is damaged: {e}") from e
    return written
