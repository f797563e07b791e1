"""safefs against hostile workspaces: planted symlinks, hardlinks, FIFOs, devices, deep trees."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloche.errors import FileNotFound, InvalidPath, TooLarge
from cloche.store import safefs

UID = GID = 12345


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through openat2 and through the O_NOFOLLOW walk fallback."""
    if request.param == "walk":
        monkeypatch.setattr(safefs, "_use_openat2", False)
    elif not safefs._use_openat2:
        pytest.skip("openat2 is not available here")
    return str(request.param)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_text("host secret")
    return out


def snapshot(path: Path) -> dict[str, bytes | str]:
    """Everything under ``path`` (link targets, file bytes), to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    for p in sorted(path.rglob("*")):
        key = str(p.relative_to(path))
        out[key] = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


# validate_relpath


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a", "a"), ("./a//b", "a/b"), ("a/./b/", "a/b"), ("a b/ü.txt", "a b/ü.txt"), ("x" * 255, "x" * 255)],
)
def test_validate_relpath_normalises(given: str, expected: str) -> None:
    assert str(safefs.validate_relpath(given)) == expected


@pytest.mark.parametrize(
    ("bad", "hint"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("..", "'..'"),
        ("../../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("a\x00b", "NUL"),
        ("a\\b", "backslash"),
        ("x" * 256, "255"),
        ("a/" * 2048 + "b", "4096"),
        (".", "root"),
        ("./", "root"),
        ("\ud800", "UTF-8"),
    ],
)
def test_validate_relpath_refuses(bad: str, hint: str) -> None:
    with pytest.raises(InvalidPath, match=hint):
        safefs.validate_relpath(bad)


def test_validate_relpath_root_when_allowed() -> None:
    assert str(safefs.validate_relpath("./", allow_root=True)) == "."


# write_file


def test_write_creates_parents_owned_by_sandbox(ws: Path, resolver: str) -> None:
    info = safefs.write_file(ws, "a/b/c.txt", b"hello", uid=UID, gid=GID, mode=0o755, max_bytes=None)
    assert info == safefs.FileInfo(
        "a/b/c.txt", "file", 5, hashlib.sha256(b"hello").hexdigest(), (ws / "a/b/c.txt").stat().st_mtime
    )
    assert (ws / "a/b/c.txt").read_bytes() == b"hello"
    for p in (ws / "a", ws / "a/b", ws / "a/b/c.txt"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (UID, GID)
    assert stat.S_IMODE((ws / "a/b/c.txt").stat().st_mode) == 0o755
    assert stat.S_IMODE((ws / "a").stat().st_mode) == 0o755
    assert os.listdir(ws / "a/b") == ["c.txt"]  # no temp file left behind


def test_write_accepts_file_objects_and_iterables(ws: Path) -> None:
    safefs.write_file(ws, "f", io.BytesIO(b"x" * 3_000_000), uid=UID, gid=GID, max_bytes=None)
    safefs.write_file(ws, "g", iter([b"ab", b"cd"]), uid=UID, gid=GID, max_bytes=4)
    assert (ws / "f").stat().st_size == 3_000_000
    assert (ws / "g").read_bytes() == b"abcd"


def test_write_replaces_existing_file_and_drops_setuid(ws: Path) -> None:
    safefs.write_file(ws, "f", b"old", uid=UID, gid=GID, max_bytes=None)
    safefs.write_file(ws, "f", b"new", uid=UID, gid=GID, mode=0o4755, max_bytes=None)
    assert (ws / "f").read_bytes() == b"new"
    assert stat.S_IMODE((ws / "f").stat().st_mode) == 0o755


@pytest.mark.parametrize("target", ["outside", "/etc"])
def test_write_through_symlinked_dir_is_refused(ws: Path, outside: Path, target: str, resolver: str) -> None:
    link_to = outside if target == "outside" else Path("/etc")
    (ws / "evil").symlink_to(link_to)
    before = snapshot(outside)
    with pytest.raises(InvalidPath, match="symlink"):
        safefs.write_file(ws, "evil/cloche-test-x", b"pwned", uid=UID, gid=GID, max_bytes=None)
    assert not (link_to / "cloche-test-x").exists()
    assert snapshot(outside) == before


def test_write_through_deep_symlink_is_refused(ws: Path, outside: Path, resolver: str) -> None:
    (ws / "a").mkdir()
    (ws / "a/b").symlink_to(outside)
    with pytest.raises(InvalidPath):
        safefs.write_file(ws, "a/b/c/d", b"pwned", uid=UID, gid=GID, max_bytes=None)
    assert sorted(os.listdir(outside)) == ["secret"]


def test_write_over_final_symlink_replaces_the_link(ws: Path, outside: Path, resolver: str) -> None:
    (ws / "link").symlink_to(outside / "secret")
    (ws / "hard").hardlink_to(outside / "secret")
    safefs.write_file(ws, "link", b"mine", uid=UID, gid=GID, max_bytes=None)
    safefs.write_file(ws, "hard", b"mine too", uid=UID, gid=GID, max_bytes=None)
    assert not (ws / "link").is_symlink()
    assert (ws / "link").read_bytes() == b"mine"
    assert (ws / "hard").read_bytes() == b"mine too"
    assert (outside / "secret").read_text() == "host secret"


def test_write_over_fifo_replaces_it(ws: Path) -> None:
    os.mkfifo(ws / "pipe")
    safefs.write_file(ws, "pipe", b"data", uid=UID, gid=GID, max_bytes=None)
    assert stat.S_ISREG((ws / "pipe").lstat().st_mode)


def test_write_over_directory_or_under_file_is_refused(ws: Path) -> None:
    (ws / "d").mkdir()
    (ws / "f").write_text("x")
    with pytest.raises(InvalidPath, match="directory"):
        safefs.write_file(ws, "d", b"x", uid=UID, gid=GID, max_bytes=None)
    with pytest.raises(InvalidPath, match="not a directory"):
        safefs.write_file(ws, "f/x", b"x", uid=UID, gid=GID, max_bytes=None)


def test_write_too_large_leaves_nothing(ws: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 600
        yield b"x" * 600

    with pytest.raises(TooLarge):
        safefs.write_file(ws, "big", chunks(), uid=UID, gid=GID, max_bytes=1000)
    with pytest.raises(TooLarge):
        safefs.write_file(ws, "big", b"x" * 1001, uid=UID, gid=GID, max_bytes=1000)
    assert os.listdir(ws) == []


def test_write_failure_mid_stream_cleans_temp(ws: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        safefs.write_file(ws, "f", chunks(), uid=UID, gid=GID, max_bytes=None)
    assert os.listdir(ws) == []


# read


def test_read_regular_file(ws: Path, resolver: str) -> None:
    (ws / "d").mkdir()
    (ws / "d/f").write_bytes(b"content")
    assert safefs.read_file(ws, "d/f", max_bytes=100) == b"content"
    fh, size = safefs.open_for_read(ws, "./d//f")
    with fh:
        assert (fh.read(), size) == (b"content", 7)
    with pytest.raises(TooLarge):
        safefs.read_file(ws, "d/f", max_bytes=6)


def test_read_refuses_symlinks(ws: Path, outside: Path, resolver: str) -> None:
    (ws / "link").symlink_to(outside / "secret")
    (ws / "dir").symlink_to(outside)
    with pytest.raises(InvalidPath, match="symlink"):
        safefs.read_file(ws, "link", max_bytes=100)
    with pytest.raises(InvalidPath, match="symlink"):
        safefs.read_file(ws, "dir/secret", max_bytes=100)


def test_read_refuses_hardlink_to_host_file(ws: Path, outside: Path, resolver: str) -> None:
    (ws / "shadow").hardlink_to(outside / "secret")
    with pytest.raises(InvalidPath, match="hard links"):
        safefs.read_file(ws, "shadow", max_bytes=100)


@pytest.mark.timeout(10)
def test_read_refuses_fifo_without_blocking(ws: Path, resolver: str) -> None:
    os.mkfifo(ws / "pipe")
    with pytest.raises(InvalidPath, match="not a regular file"):
        safefs.read_file(ws, "pipe", max_bytes=100)


def test_read_refuses_socket_and_device(ws: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(ws / "sock"))
        with pytest.raises(InvalidPath, match="not a regular file"):
            safefs.read_file(ws, "sock", max_bytes=100)
    try:
        os.mknod(ws / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot mknod here")
    with pytest.raises(InvalidPath, match="not a regular file"):
        safefs.read_file(ws, "null", max_bytes=100)


def test_read_missing_and_directory(ws: Path) -> None:
    (ws / "d").mkdir()
    with pytest.raises(FileNotFound):
        safefs.read_file(ws, "nope", max_bytes=100)
    with pytest.raises(InvalidPath, match="directory"):
        safefs.read_file(ws, "d", max_bytes=100)


# delete


def test_delete_file_and_tree_without_following_links(ws: Path, outside: Path, resolver: str) -> None:
    (ws / "t/sub").mkdir(parents=True)
    (ws / "t/sub/f").write_text("x")
    (ws / "t/to-outside").symlink_to(outside)
    (ws / "t/hard").hardlink_to(outside / "secret")
    os.mkfifo(ws / "t/sub/pipe")
    (ws / "f").write_text("x")
    before = snapshot(outside)
    safefs.delete_path(ws, "f")
    safefs.delete_path(ws, "t")
    assert os.listdir(ws) == []
    assert snapshot(outside) == before


def test_delete_symlink_removes_only_the_link(ws: Path, outside: Path) -> None:
    (ws / "evil").symlink_to(outside)
    with pytest.raises(InvalidPath):
        safefs.delete_path(ws, "evil/secret")
    safefs.delete_path(ws, "evil")
    assert os.listdir(ws) == []
    assert (outside / "secret").read_text() == "host secret"


def test_delete_refuses_root_and_reports_missing(ws: Path) -> None:
    with pytest.raises(InvalidPath):
        safefs.delete_path(ws, ".")
    with pytest.raises(FileNotFound):
        safefs.delete_path(ws, "nope")


# list_dir / lookup / tree_usage


def test_list_dir_reports_without_following(ws: Path, outside: Path, resolver: str) -> None:
    (ws / "src/pkg").mkdir(parents=True)
    (ws / "src/pkg/m.py").write_bytes(b"print(1)\n")
    (ws / "src/link").symlink_to(outside)
    (ws / "hard").hardlink_to(outside / "secret")
    os.mkfifo(ws / "pipe")
    infos = {i.path: i for i in safefs.list_dir(ws)}
    assert set(infos) == {"src", "src/pkg", "src/pkg/m.py", "src/link", "hard", "pipe"}
    assert infos["src/pkg/m.py"].type == "file"
    assert infos["src/pkg/m.py"].size == 9
    assert infos["src/pkg/m.py"].sha256 == hashlib.sha256(b"print(1)\n").hexdigest()
    assert (infos["src/link"].type, infos["src/link"].sha256) == ("symlink", None)
    assert (infos["hard"].type, infos["hard"].sha256) == ("file", None)
    assert infos["pipe"].type == "other"
    assert infos["src"].type == "dir"
    assert [i.path for i in safefs.list_dir(ws, "src/pkg")] == ["src/pkg/m.py"]
    with pytest.raises(InvalidPath, match="symlink"):
        safefs.list_dir(ws, "src/link")


def test_list_dir_caps_entries_and_depth(ws: Path) -> None:
    for i in range(20):
        (ws / f"f{i}").touch()
    with pytest.raises(TooLarge):
        safefs.list_dir(ws, max_entries=10)
    deep = ws / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    try:
        for _ in range(safefs.MAX_WALK_DEPTH + 5):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    with pytest.raises(TooLarge, match="deeper"):
        safefs.list_dir(ws, "deep")


def test_lookup(ws: Path, outside: Path) -> None:
    (ws / "d").mkdir()
    (ws / "link").symlink_to(outside)
    assert safefs.lookup(ws, "nope") is None
    info = safefs.lookup(ws, "d")
    assert info is not None and info.type == "dir"
    info = safefs.lookup(ws, "link")
    assert info is not None and info.type == "symlink"
    with pytest.raises(InvalidPath):
        safefs.lookup(ws, "link/secret")


def test_tree_usage_counts_inside_only(ws: Path, outside: Path) -> None:
    (outside / "big").write_bytes(b"x" * 1_000_000)
    (ws / "d").mkdir()
    (ws / "d/f").write_bytes(b"y" * 10_000)
    (ws / "d/f2").hardlink_to(ws / "d/f")
    (ws / "link").symlink_to(outside / "big")
    used, inodes = safefs.tree_usage(ws)
    assert inodes == 3  # d, d/f (once for both names), link
    assert 10_000 <= used < 100_000


# remove_tree


def test_remove_tree_with_hostile_content(ws: Path, outside: Path, resolver: str) -> None:
    (ws / "locked/inner").mkdir(parents=True)
    (ws / "locked/inner/f").write_text("x")
    (ws / "locked/to-outside").symlink_to(outside)
    (ws / "locked/hard").hardlink_to(outside / "secret")
    os.mkfifo(ws / "locked/pipe")
    os.chmod(ws / "locked/inner", 0)
    os.chmod(ws / "locked", 0)
    fd = os.open(ws, os.O_RDONLY)
    try:  # deeper than the hoisting threshold and than the walk limit
        for _ in range(300):
            os.mkdir("n", dir_fd=fd)
            nxt = os.open("n", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    before = snapshot(outside)
    safefs.remove_tree(ws)
    assert not ws.exists()
    assert snapshot(outside) == before
    safefs.remove_tree(ws)  # idempotent


def test_remove_tree_of_symlinked_root_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "ws").symlink_to(outside)
    with pytest.raises(OSError):
        safefs.remove_tree(tmp_path / "ws")
    assert (outside / "secret").exists()


def test_openat2_is_used_on_this_kernel(ws: Path) -> None:
    assert safefs.lookup(ws, "nope") is None
    if not safefs._use_openat2:
        pytest.skip("no openat2 here (old kernel or architecture): only the fallback walk was tested")
    assert safefs._SYS_OPENAT2 == 437


def test_enosys_falls_back_to_the_walk(ws: Path, outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NoOpenat2:
        def syscall(self, *args: object) -> int:
            ctypes.set_errno(errno.ENOSYS)
            return -1

    monkeypatch.setattr(safefs, "_libc", NoOpenat2())
    monkeypatch.setattr(safefs, "_use_openat2", True)
    (ws / "evil").symlink_to(outside)
    safefs.write_file(ws, "d/f", b"x", uid=UID, gid=GID, max_bytes=None)
    assert not safefs._use_openat2
    assert safefs.read_file(ws, "d/f", max_bytes=10) == b"x"
    with pytest.raises(InvalidPath, match="symlink"):
        safefs.write_file(ws, "evil/f", b"x", uid=UID, gid=GID, max_bytes=None)


def test_no_fd_leaks(ws: Path, outside: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    (ws / "evil").symlink_to(outside)
    for _ in range(20):
        safefs.write_file(ws, "a/b/f", b"x", uid=UID, gid=GID, max_bytes=None)
        fh, _ = safefs.open_for_read(ws, "a/b/f")
        fh.close()
        safefs.list_dir(ws)
        safefs.tree_usage(ws)
        for bad in ("evil/x", "a/b/f/x", "nope/x"):
            with pytest.raises((InvalidPath, FileNotFound)):
                safefs.read_file(ws, bad, max_bytes=10)
        safefs.delete_path(ws, "a")
    assert len(os.listdir("/proc/self/fd")) == before
