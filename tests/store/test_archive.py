"""extract_archive against hostile zips and tars: traversal, links, devices, bombs, lying headers."""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from cloche.errors import InvalidArchive, InvalidPath, TooLarge
from cloche.store.archive import extract_archive

UID = GID = 12345
MiB = 1 << 20


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


def extract(ws: Path, data: bytes | Path, **overrides: Any) -> list[str]:
    limits: dict[str, Any] = {"max_members": 100, "max_total_bytes": 10 * MiB, "max_member_bytes": 5 * MiB}
    limits.update(overrides)
    src = data if isinstance(data, Path) else io.BytesIO(data)
    return [i.path for i in extract_archive(ws, src, uid=UID, gid=GID, **limits)]


def make_zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                info.mode = 0o755 if m[0].endswith(".sh") else 0o644
                tf.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def assert_empty(ws: Path) -> None:
    assert os.listdir(ws) == []


NESTED = [("top.txt", b"top"), ("a/b/c.txt", b"deep"), ("a/run.sh", b"#!/bin/sh\n")]


def check_nested(ws: Path) -> None:
    assert (ws / "top.txt").read_bytes() == b"top"
    assert (ws / "a/b/c.txt").read_bytes() == b"deep"
    for p in ("top.txt", "a", "a/b", "a/b/c.txt", "a/run.sh"):
        st = (ws / p).stat()
        assert (st.st_uid, st.st_gid) == (UID, GID), p
    assert stat.S_IMODE((ws / "a/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((ws / "top.txt").stat().st_mode) == 0o644


def test_zip_keeps_structure_and_ownership(ws: Path) -> None:
    run = zipfile.ZipInfo("a/run.sh")
    run.create_system, run.external_attr = 3, (stat.S_IFREG | 0o755) << 16
    data = make_zip([("top.txt", b"top"), ("a/b/c.txt", b"deep"), (run, b"#!/bin/sh\n"), ("empty/", b"")])
    assert extract(ws, data) == ["top.txt", "a/b/c.txt", "a/run.sh", "empty"]
    check_nested(ws)
    assert (ws / "empty").is_dir()


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_variants_keep_structure(ws: Path, mode: str, tmp_path: Path) -> None:
    archive = tmp_path / "upload.bin"  # no telling extension: detection is by content
    archive.write_bytes(make_tar([tar_entry("a", tarfile.DIRTYPE), *NESTED], mode))
    assert extract(ws, archive) == ["a", "top.txt", "a/b/c.txt", "a/run.sh"]
    check_nested(ws)


def test_dest_folder(ws: Path) -> None:
    assert extract(ws, make_zip([("x/y.txt", b"y")]), dest="sub/dir") == ["sub/dir/x/y.txt"]
    assert (ws / "sub/dir/x/y.txt").read_bytes() == b"y"
    assert (ws / "sub").stat().st_uid == UID
    with pytest.raises(InvalidPath):
        extract(ws, make_zip([("y", b"y")]), dest="../up")


@pytest.mark.parametrize("name", ["a/../../x", "../x", "/abs/x", "a\\..\\..\\x", ".."])
def test_zip_traversal_is_refused_and_nothing_written(ws: Path, name: str) -> None:
    data = make_zip([("good.txt", b"fine"), (name, b"pwned")])
    with pytest.raises(InvalidArchive, match="member"):
        extract(ws, data)
    assert_empty(ws)
    assert not (ws.parent / "x").exists()


@pytest.mark.parametrize("kind", [stat.S_IFLNK, stat.S_IFCHR, stat.S_IFIFO, stat.S_IFSOCK])
def test_zip_special_members_are_refused(ws: Path, kind: int) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system, link.external_attr = 3, (kind | 0o777) << 16
    with pytest.raises(InvalidArchive, match="'link'"):
        extract(ws, make_zip([("good.txt", b"fine"), (link, b"/etc/passwd")]))
    assert_empty(ws)


@pytest.mark.parametrize(
    ("member", "what"),
    [
        (tar_entry("link", tarfile.SYMTYPE, "/etc/passwd"), "symlink"),
        (tar_entry("link", tarfile.LNKTYPE, "/etc/shadow"), "hardlink"),
        (tar_entry("link", tarfile.CHRTYPE), "device"),
        (tar_entry("link", tarfile.BLKTYPE), "device"),
        (tar_entry("link", tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_tar_special_members_are_refused(ws: Path, member: tarfile.TarInfo, what: str) -> None:
    data = make_tar([("good.txt", b"fine"), member], "w:gz")
    with pytest.raises(InvalidArchive, match=f"'link' is an? {what}"):
        extract(ws, data)
    assert_empty(ws)


@pytest.mark.parametrize("name", ["../x", "/etc/cron.d/x", "a/../../x"])
def test_tar_traversal_is_refused(ws: Path, name: str) -> None:
    with pytest.raises(InvalidArchive, match="member"):
        extract(ws, make_tar([("good.txt", b"fine"), (name, b"x")]))
    assert_empty(ws)


def test_zip_bomb_by_declared_size(ws: Path) -> None:
    data = make_zip([("zeros", bytes(20 * MiB))])
    assert len(data) < 100_000
    with pytest.raises(TooLarge):
        extract(ws, data, max_total_bytes=MiB, max_member_bytes=100 * MiB)
    with pytest.raises(TooLarge):
        extract(ws, data, max_total_bytes=100 * MiB, max_member_bytes=MiB)
    assert_empty(ws)


def test_zip_bomb_with_lying_headers(ws: Path) -> None:
    data = bytearray(make_zip([("small.txt", b"ok"), ("zeros", bytes(20 * MiB))]))
    # Claim 100 bytes uncompressed for 'zeros' in both its local and central headers.
    local = data.index(b"zeros") - 30  # a local header is 30 bytes before its file name
    assert data[local : local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, local + 22, 100)
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)
    with pytest.raises((InvalidArchive, TooLarge)):
        extract(ws, bytes(data), max_total_bytes=1000)
    assert_empty(ws)


def test_tar_gz_bomb(ws: Path) -> None:
    data = make_tar([("zeros", bytes(20 * MiB))], "w:gz")
    with pytest.raises(TooLarge):
        extract(ws, data, max_total_bytes=MiB, max_member_bytes=100 * MiB)
    assert_empty(ws)


def test_too_many_members(ws: Path) -> None:
    members = [(f"f{i}", b"") for i in range(11)]
    with pytest.raises(TooLarge, match="members"):
        extract(ws, make_zip(list(members)), max_members=10)
    with pytest.raises(TooLarge, match="members"):
        extract(ws, make_tar(list(members), "w:gz"), max_members=10)
    assert_empty(ws)


def test_file_and_directory_clash_in_archive(ws: Path) -> None:
    with pytest.raises(InvalidArchive, match="both a file and a directory"):
        extract(ws, make_zip([("a", b"file"), ("a/b", b"under it")]))
    with pytest.raises(InvalidArchive, match="more than once"):
        extract(ws, make_tar([("a", b"1"), ("a", b"2")]))
    assert_empty(ws)


def test_symlink_already_in_workspace_blocks_extraction(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "a").symlink_to(outside)
    (ws / "d").mkdir()
    with pytest.raises(InvalidArchive, match="'a' is a symlink"):
        extract(ws, make_zip([("ok.txt", b"x"), ("a/b/c", b"pwned")]))
    with pytest.raises(InvalidArchive, match="'d' is a directory"):
        extract(ws, make_zip([("d", b"x")]))
    assert sorted(os.listdir(ws)) == ["a", "d"]
    assert os.listdir(outside) == []


def test_file_member_over_planted_symlink_replaces_link(ws: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host")
    (ws / "f").symlink_to(secret)
    extract(ws, make_zip([("f", b"mine")]))
    assert not (ws / "f").is_symlink()
    assert secret.read_text() == "host"


@pytest.mark.parametrize("data", [b"", b"hello world" * 100, b"PK\x03\x04garbage" + bytes(600), b"\x1f\x8bnot gzip"])
def test_not_an_archive(ws: Path, data: bytes) -> None:
    with pytest.raises(InvalidArchive):
        extract(ws, data)
    assert_empty(ws)


def test_zip_never_writes_more_than_declared(ws: Path) -> None:
    # A consistent lie (size and CRC of the first 100 bytes): only those 100 bytes come out.
    data = bytearray(make_zip([("zeros", bytes(20 * MiB))]))
    crc = zlib.crc32(bytes(100))
    local, central = data.index(b"PK\x03\x04"), data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 14, crc)
    struct.pack_into("<I", data, local + 22, 100)
    struct.pack_into("<I", data, central + 16, crc)
    struct.pack_into("<I", data, central + 24, 100)
    extract(ws, bytes(data), max_total_bytes=1000)
    assert (ws / "zeros").stat().st_size == 100


def test_tar_header_bomb_is_bounded(ws: Path) -> None:
    # A pax record is read into memory by tarfile itself; the stream budget must stop it.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": "x" * (3 * MiB)}
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(TooLarge):
        extract(ws, gzip.compress(buf.getvalue()), max_total_bytes=MiB, max_members=10)
    assert_empty(ws)


@pytest.mark.parametrize("hidden", ["evil.txt\0.py", "dir/\0x", "ok\0"])
def test_zip_member_with_nul_is_refused_not_cut(ws: Path, hidden: str) -> None:
    # zipfile cuts names at NUL ("evil.txt\0.py" -> "evil.txt"); the name as stored must be judged instead.
    stand_in = hidden.replace("\0", "Z")
    data = make_zip([("good.txt", b"fine"), (stand_in, b"payload")]).replace(stand_in.encode(), hidden.encode())
    with pytest.raises(InvalidArchive, match="NUL"):
        extract(ws, data)
    assert_empty(ws)
