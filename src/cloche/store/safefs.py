"""Host-side file operations on sandbox workspaces that never follow what the sandbox planted.

The server runs as root and a workspace is writable by untrusted jailed code, so any name in
it may be a symlink, a hardlink to a host file, a FIFO or a device, and may change between
two of our syscalls. Every open is therefore made relative to a directory fd with openat2(2)
and ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS``: the kernel refuses,
atomically with the lookup, to leave the root or to traverse any link. Paths are checked by
``validate_relpath`` first, and every other call works on fds and single names (``*at``).

Size: one module on purpose. Every function here serves that one invariant (host code never follows
what the sandbox planted) with the same fd-walking primitives; split apart, a caller could reach a
workspace through a path that skipped them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import platform
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal, Protocol, cast

from cloche.errors import ClocheError, Conflict, FileNotFound, InvalidPath, TooLarge

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_LIST_ENTRIES = 100_000
# Walks hold one fd per level; deeper trees are refused rather than risking fd exhaustion.
MAX_WALK_DEPTH = 128
# Removal never refuses: directories this deep are moved up to the top instead (see _remove_entry).
_RM_HOIST_DEPTH = 64
_CHUNK = 1 << 20

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
# openat2 uses the unified syscall table number on both supported architectures.
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437}.get(platform.machine())

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY

FileType = Literal["file", "dir", "symlink", "other"]


class SupportsRead(Protocol):
    def read(self, size: int, /) -> bytes: ...


WriteSource = bytes | bytearray | memoryview | Iterable[bytes] | SupportsRead


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One workspace entry; ``path`` is relative to the workspace root, ``sha256`` is set for files."""

    path: str
    type: FileType
    size: int
    sha256: str | None
    mtime: float


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_use_openat2 = _SYS_OPENAT2 is not None


def validate_relpath(path: str, *, allow_root: bool = False) -> PurePosixPath:
    """Check a user-supplied workspace path and return it normalised ('./a//b' -> 'a/b').

    The root itself ('.', './') is refused unless ``allow_root``, where it comes back as '.'.
    """
    if not path:
        raise InvalidPath("the path is empty; give one relative to the workspace, e.g. 'src/main.py'")
    if "\x00" in path:
        raise InvalidPath("the path contains a NUL byte")
    if "\\" in path:
        raise InvalidPath(f"{path!r} contains a backslash; separate directories with '/'")
    if path.startswith("/"):
        raise InvalidPath(f"{path!r} is absolute; give it relative to the workspace root")
    try:
        if len(os.fsencode(path)) > MAX_PATH_BYTES:
            raise InvalidPath(f"the path is longer than {MAX_PATH_BYTES} bytes")
    except UnicodeEncodeError as e:
        raise InvalidPath("the path is not valid UTF-8") from e
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPath(f"{path!r} contains '..'; paths must stay inside the workspace")
    for part in parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise InvalidPath(f"the name {part[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    if not parts:
        if allow_root:
            return PurePosixPath(".")
        raise InvalidPath(f"{path!r} names the workspace root; a file path is required")
    return PurePosixPath(*parts)


def _openat2(dirfd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open ``path`` beneath ``dirfd``; a symlink anywhere on the way fails (ELOOP, or ENOTDIR
    for a trailing one with O_DIRECTORY), and so does any escape from ``dirfd`` (EXDEV)."""
    global _use_openat2
    if _use_openat2:
        how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, _RESOLVE)
        raw = ctypes.c_char_p(os.fsencode(path))
        nr, size = _SYS_OPENAT2 or 0, ctypes.c_long(ctypes.sizeof(how))
        for _ in range(32):
            # Integers go as C longs: syscall(2) is variadic and reads every argument as a long.
            fd = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_long(dirfd), raw, ctypes.byref(how), size))
            if fd >= 0:
                return fd
            err = ctypes.get_errno()
            # EAGAIN: RESOLVE_BENEATH saw a concurrent rename somewhere and refused to guess.
            if err in (errno.EINTR, errno.EAGAIN):
                continue
            if err != errno.ENOSYS:
                raise OSError(err, os.strerror(err), path)
            _use_openat2 = False
            break
        else:
            raise OSError(errno.EAGAIN, "path kept changing during lookup", path)
    return _walk_open(dirfd, path, flags, mode)


def _walk_open(dirfd: int, path: str, flags: int, mode: int) -> int:
    # Fallback only for kernels without openat2 (< 5.6, ENOSYS) or other architectures. Each step
    # opens one component with O_NOFOLLOW relative to the previous fd, so no symlink is traversed
    # (ELOOP or ENOTDIR, like openat2) and, with '..' refused by validate_relpath, nothing can
    # climb out of dirfd. It is race-free per step but costs one syscall per component.
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        return os.open(".", flags | os.O_NOFOLLOW, mode, dir_fd=dirfd)
    cur = dirfd
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=cur)
            if cur != dirfd:
                os.close(cur)
            cur = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=cur)
    finally:
        if cur != dirfd:
            os.close(cur)


_SYMLINK_NOTE = "cloche never follows symlinks in a workspace"
_ERRNO_ERRORS: dict[int, tuple[type[ClocheError], str]] = {
    errno.ENOENT: (FileNotFound, "{rel!r} does not exist in the workspace"),
    errno.ELOOP: (InvalidPath, "{rel!r} goes through a symlink; " + _SYMLINK_NOTE),
    errno.ENOTDIR: (
        InvalidPath,
        "{rel!r}: a component of the path is a symlink or not a directory; " + _SYMLINK_NOTE,
    ),
    errno.EXDEV: (InvalidPath, "{rel!r} resolves outside the workspace"),
    errno.EISDIR: (InvalidPath, "{rel!r} is a directory"),
    errno.ENAMETOOLONG: (InvalidPath, "{rel!r} is too long"),
    errno.ENXIO: (InvalidPath, "{rel!r} is not a regular file"),
    errno.EAGAIN: (Conflict, "{rel!r} kept changing while cloche resolved it; retry"),
    errno.ENOTEMPTY: (Conflict, "{rel!r} kept changing while being deleted; stop running code and retry"),
    # The workspace's volume is full (bytes or files): the write is undone, nothing partial is left.
    errno.ENOSPC: (TooLarge, "no room for {rel!r}: the workspace is at its disk or file quota; delete files"),
    errno.EDQUOT: (TooLarge, "no room for {rel!r}: the workspace is at its disk or file quota; delete files"),
}


@contextlib.contextmanager
def _translate(rel: str) -> Iterator[None]:
    """Turn errno failures a user can act on into cloche errors; anything else stays an OSError."""
    try:
        yield
    except OSError as e:
        if e.errno not in _ERRNO_ERRORS:
            raise
        cls, message = _ERRNO_ERRORS[e.errno]
        raise cls(message.format(rel=rel)) from e


@contextlib.contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _root_fd(root: Path) -> Iterator[int]:
    try:
        fd = os.open(root, _DIR_FLAGS | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise FileNotFound("the workspace directory does not exist") from e
    with _opened(fd):
        yield fd


def _info(rel: str, st: os.stat_result, sha256: str | None = None) -> FileInfo:
    m = st.st_mode
    kind: FileType = (
        "file" if stat.S_ISREG(m) else "dir" if stat.S_ISDIR(m) else "symlink" if stat.S_ISLNK(m) else "other"
    )
    return FileInfo(rel, kind, 0 if kind == "dir" else st.st_size, sha256, st.st_mtime)


def _make_dirs(root_fd: int, parts: tuple[str, ...], uid: int, gid: int, mode: int = 0o755) -> int:
    """mkdir -p of ``parts`` under root_fd, one mkdirat per level; returns an fd of the last one."""
    cur = os.dup(root_fd)
    try:
        for part in parts:
            try:
                nxt = _openat2(cur, part, _DIR_FLAGS)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=cur)
                # Ownership goes through the fd we opened with O_NOFOLLOW, never through the name.
                nxt = _openat2(cur, part, _DIR_FLAGS)
                os.fchown(nxt, uid, gid)
                os.fchmod(nxt, mode)
            os.close(cur)
            cur = nxt
    except BaseException:
        os.close(cur)
        raise
    return cur


def make_dir(root: Path, rel: str, *, uid: int, gid: int, mode: int = 0o755) -> FileInfo:
    """Create ``rel`` and its missing parents (owned by uid/gid); existing directories are kept."""
    path = validate_relpath(rel)
    with _root_fd(root) as rfd, _translate(rel), _opened(_make_dirs(rfd, path.parts, uid, gid, mode)) as fd:
        return _info(str(path), os.fstat(fd))


def _chunks(data: WriteSource) -> Iterator[bytes | bytearray | memoryview]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield data
    elif hasattr(data, "read"):
        reader = cast(SupportsRead, data)
        while chunk := reader.read(_CHUNK):
            yield chunk
    else:
        yield from data


def _write_all(fd: int, chunk: bytes | bytearray | memoryview) -> None:
    view = memoryview(chunk).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def write_file(
    root: Path,
    rel: str,
    data: WriteSource,
    *,
    uid: int,
    gid: int,
    mode: int = 0o644,
    max_bytes: int | None,
) -> FileInfo:
    """Atomically create or replace the file ``rel`` with ``data``, owned by uid/gid.

    The bytes go to a fresh O_EXCL temp file in the target directory, which is renamed over the
    target: a planted symlink or hardlink at the final name is replaced, never written through.
    Setuid/setgid/sticky bits in ``mode`` are dropped.
    """
    path = validate_relpath(rel)
    with _root_fd(root) as rfd, _translate(rel), _opened(_make_dirs(rfd, path.parent.parts, uid, gid)) as pfd:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(path.name, dir_fd=pfd, follow_symlinks=False).st_mode):
                raise InvalidPath(f"{rel!r} is an existing directory; delete it or choose another name")
        tmp = f".cloche-{secrets.token_hex(8)}.tmp"
        fd = _openat2(pfd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with _opened(fd):
                digest, size = hashlib.sha256(), 0
                for chunk in _chunks(data):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"{rel!r} is larger than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    _write_all(fd, chunk)
                os.fchown(fd, uid, gid)  # before fchmod: chown clears mode bits
                os.fchmod(fd, mode & 0o777)
                os.fsync(fd)
                st = os.fstat(fd)
            os.rename(tmp, path.name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=pfd)
            raise
    return FileInfo(str(path), "file", size, digest.hexdigest(), st.st_mtime)


def _check_regular(st: os.stat_result, rel: str) -> None:
    m = st.st_mode
    if stat.S_ISDIR(m):
        raise InvalidPath(f"{rel!r} is a directory, not a file")
    if stat.S_ISLNK(m):
        raise InvalidPath(f"{rel!r} is a symlink; {_SYMLINK_NOTE}")
    if not stat.S_ISREG(m):
        raise InvalidPath(f"{rel!r} is not a regular file (it is a FIFO, socket or device)")
    # A regular file with several links may be a hardlink to a host file (say /etc/shadow) made
    # from inside the jail; we cannot tell where its other names live, so refuse it. The cost:
    # files the sandbox hardlinked itself are unreadable through the API (copy them instead).
    if st.st_nlink > 1:
        raise InvalidPath(f"{rel!r} has {st.st_nlink} hard links; cloche reads only singly-linked files")


def _open_regular(dirfd: int, path: str, rel: str) -> int:
    # Look first through an O_PATH fd, which opens nothing: a FIFO or device is refused without
    # ever being opened (no blocking, no driver side effects). Then open for real and make sure
    # the same inode came back, in case the name was swapped in between.
    with _opened(_openat2(dirfd, path, os.O_PATH | os.O_NOFOLLOW)) as probe:
        first = os.fstat(probe)
    _check_regular(first, rel)
    fd = _openat2(dirfd, path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        _check_regular(st, rel)
        if (st.st_dev, st.st_ino) != (first.st_dev, first.st_ino):
            raise Conflict(f"{rel!r} changed while cloche opened it; retry")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_for_read(root: Path, rel: str) -> tuple[BinaryIO, int]:
    """Open a regular, singly-linked workspace file; returns the open file and its size. Caller closes."""
    path = validate_relpath(rel)
    with _root_fd(root) as rfd, _translate(rel):
        fd = _open_regular(rfd, str(path), rel)
    return os.fdopen(fd, "rb"), os.fstat(fd).st_size


def read_file(root: Path, rel: str, *, max_bytes: int) -> bytes:
    """Whole contents of a workspace file; TooLarge past ``max_bytes``."""
    fh, size = open_for_read(root, rel)
    with fh:
        if size > max_bytes:
            raise TooLarge(f"{rel!r} is {size} bytes; the limit is {max_bytes}")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew after fstat
        raise TooLarge(f"{rel!r} is larger than the limit of {max_bytes} bytes")
    return data


def lookup(root: Path, rel: str) -> FileInfo | None:
    """What ``rel`` is (without sha256), or None if missing; InvalidPath if a symlink is on the way."""
    path = validate_relpath(rel, allow_root=True)
    with _root_fd(root) as rfd, _translate(rel):
        try:
            fd = _openat2(rfd, str(path), os.O_PATH | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        with _opened(fd):
            return _info(str(path), os.fstat(fd))


def _remove_entry(dfd: int, name: str, top: int, depth: int, pending: list[str]) -> None:
    """Remove ``name`` in ``dfd`` and everything below it, never following a link."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dfd)
        return
    if depth >= _RM_HOIST_DEPTH:
        # Hostile trees can nest far deeper than our fd budget; move the subtree up to ``top``
        # and finish it later, so at most _RM_HOIST_DEPTH fds are ever held.
        hoisted = f".cloche-rm-{secrets.token_hex(8)}"
        os.rename(name, hoisted, src_dir_fd=dfd, dst_dir_fd=top)
        pending.append(hoisted)
        return
    try:
        sub = _openat2(dfd, name, _DIR_FLAGS)
    except PermissionError:
        # Only reachable when not root (root has CAP_DAC_OVERRIDE): grant ourselves access first.
        with contextlib.suppress(OSError, NotImplementedError, ValueError):
            os.chmod(name, 0o700, dir_fd=dfd, follow_symlinks=False)
        sub = _openat2(dfd, name, _DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a link or file meanwhile
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(name, dir_fd=dfd)
            return
        raise
    with _opened(sub):
        if st.st_mode & 0o700 != 0o700:
            with contextlib.suppress(OSError):
                os.fchmod(sub, 0o700)
        _remove_contents(sub, top, depth + 1, pending, lambda: os.rmdir(name, dir_fd=dfd))


def _remove_contents(dfd: int, top: int, depth: int, pending: list[str], rmdir: Callable[[], None]) -> None:
    """Empty the directory open as ``dfd``, then ``rmdir()`` it."""
    for attempt in range(3):
        for name in os.listdir(dfd):
            _remove_entry(dfd, name, top, depth, pending)
        if dfd == top:
            while pending:
                _remove_entry(top, pending.pop(), top, 1, pending)
        try:
            rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # Something was created meanwhile (the sandbox may still be running): go again.
            if e.errno != errno.ENOTEMPTY or attempt == 2:
                raise


def delete_path(root: Path, rel: str) -> None:
    """Delete a file, link or whole directory tree at ``rel``; links are removed, never followed."""
    path = validate_relpath(rel)
    name = path.name
    with _root_fd(root) as rfd, _translate(rel), _opened(_openat2(rfd, str(path.parent), _DIR_FLAGS)) as pfd:
        if not stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=pfd)
            return
        with _opened(_openat2(pfd, name, _DIR_FLAGS)) as dfd:
            _remove_contents(dfd, dfd, 1, [], lambda: os.rmdir(name, dir_fd=pfd))


def remove_tree(root: Path) -> None:
    """Remove a whole workspace, whatever hostile content it holds; a missing root is fine."""
    try:
        fd = os.open(root, _DIR_FLAGS | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    with _opened(fd):
        _remove_contents(fd, fd, 1, [], lambda: os.rmdir(root))


def _walk(
    top: int, prefix: str, prune: Callable[[str], bool] | None = None
) -> Iterator[tuple[int, str, str, os.stat_result]]:
    """Depth-first (parent fd, name, relative path, lstat) of everything under ``top``.

    Directories are entered through fds opened beneath their parent, so links are reported,
    never followed; a directory for which ``prune(rel)`` is true is reported but not entered.
    Deeper than MAX_WALK_DEPTH raises TooLarge.
    """
    stack: list[tuple[int, str, Iterator[str]]] = []
    try:
        names = iter(sorted(os.listdir(top)))
        stack.append((os.dup(top), prefix, names))
        while stack:
            dfd, drel, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(stack.pop()[0])
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            rel = f"{drel}/{name}" if drel else name
            yield dfd, name, rel, st
            if not stat.S_ISDIR(st.st_mode) or (prune is not None and prune(rel)):
                continue
            if len(stack) >= MAX_WALK_DEPTH:
                raise TooLarge(f"directories nest deeper than {MAX_WALK_DEPTH} levels at {rel!r}")
            try:
                sub = _openat2(dfd, name, _DIR_FLAGS)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):  # swapped meanwhile
                    continue
                raise
            stack.append((sub, rel, iter(())))  # pushed first so it is closed if listdir fails
            stack[-1] = (sub, rel, iter(sorted(os.listdir(sub))))
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)


def _sha256_at(dirfd: int, name: str, st: os.stat_result) -> str | None:
    """Hash of the file ``st`` describes, or None if it is not (or no longer) a safe file."""
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        return None
    try:
        fd = _openat2(dirfd, name, _READ_FLAGS)
    except OSError:
        return None
    with _opened(fd):
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or now.st_nlink > 1:
            return None
        digest, left = hashlib.sha256(), now.st_size
        while left > 0 and (chunk := os.read(fd, min(left, _CHUNK))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def list_dir(
    root: Path,
    rel: str = "",
    *,
    max_entries: int = MAX_LIST_ENTRIES,
    with_sha256: bool = True,
    prune: Callable[[str], bool] | None = None,
) -> list[FileInfo]:
    """Everything below directory ``rel`` ('' is the root), paths relative to the workspace root.

    Symlinks are listed as 'symlink' and not entered; hardlinked files get no sha256. Directories
    ``prune`` accepts (a workspace-relative path) are listed but not entered (build caches, node_modules).
    """
    path = validate_relpath(rel or ".", allow_root=True)
    prefix = "" if path == PurePosixPath(".") else str(path)
    out: list[FileInfo] = []
    with _root_fd(root) as rfd, _translate(rel or "."), _opened(_openat2(rfd, str(path), _DIR_FLAGS)) as dfd:
        for parent, name, entry, st in _walk(dfd, prefix, prune):
            if len(out) >= max_entries:
                raise TooLarge(f"more than {max_entries} entries under {rel or '.'!r}")
            out.append(_info(entry, st, _sha256_at(parent, name, st) if with_sha256 else None))
    return out


def tree_usage(root: Path) -> tuple[int, int]:
    """(bytes, inodes) used below ``root``, for quotas; links are not followed.

    Bytes are allocated blocks (st_blocks * 512), so sparse files count what they really take;
    an inode with several links inside the tree is counted once.
    """
    seen: set[tuple[int, int]] = set()
    used = inodes = 0
    with _root_fd(root) as rfd:
        for _, _, _, st in _walk(rfd, ""):
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            used += st.st_blocks * 512
            inodes += 1
    return used, inodes
