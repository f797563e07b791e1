"""Attacks on the root-run server through what a sandbox leaves in its workspace, over the real HTTP API.

Jailed code cannot reach host paths, but the server (root, on the host) reads and writes the workspace for
uploads, downloads, listings, archive extraction and deletion. Code in the jail can plant symlinks (to host
paths it cannot see, but the server could), hardlinks, FIFOs and sockets, and can swap names while the
server works. Hardlinks to host files and device nodes cannot be made from the jail (EXDEV, EPERM); the
tests plant those from the host, as a stand-in for an earlier bug, to prove the server's own checks.
Each test asserts the host is untouched and clean afterwards.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerProcess, traversable_dir
from tests_support import assert_clean, run_command, zip_of

Result = dict[str, Any]
CANARY = b"host canary: never readable or writable through a sandbox\n"


run = functools.partial(run_command, default_timeout=60)


def plant(api: httpx.Client, sid: str, command: str) -> None:
    result = run(api, sid, command)
    assert result["status"] == "succeeded", result


@dataclass
class Host:
    """Host files a hostile workspace points at: a canary file and an empty drop folder."""

    root: Path

    @property
    def canary(self) -> Path:
        return self.root / "canary.txt"

    @property
    def drop(self) -> Path:
        return self.root / "drop"

    def assert_untouched(self) -> None:
        assert self.canary.read_bytes() == CANARY
        st = self.canary.stat()
        assert (st.st_uid, st.st_nlink, stat.S_IMODE(st.st_mode)) == (0, 1, 0o600)
        assert sorted(p.name for p in self.root.iterdir()) == ["canary.txt", "drop"]
        assert list(self.drop.iterdir()) == []


@pytest.fixture
def host() -> Iterator[Host]:
    # Beside the server's data dir, on the same filesystem, so host-side hardlinks into a workspace work.
    found = Host(traversable_dir())
    found.canary.write_bytes(CANARY)
    found.canary.chmod(0o600)
    found.drop.mkdir()
    yield found
    shutil.rmtree(found.root, ignore_errors=True)


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture
def sid(api: httpx.Client, isolation: str) -> str:
    """A sandbox in the module's tier: what its code plants reaches the host through bwrap, or gVisor's Gofer."""
    response = api.post("/v1/sandboxes", json={"language": "python", "isolation": isolation})
    assert response.status_code == 201, response.text
    sandbox_id: str = response.json()["id"]
    return sandbox_id


def host_link(host_file: Path, server: ServerProcess, sid: str, name: str) -> bool:
    """Hardlink a host file into the workspace, as a walked workspace on the data filesystem allows.

    A workspace on its own volume is another filesystem: the link is impossible (EXDEV), and False says so.
    """
    try:
        os.link(host_file, workspace(server, sid) / name)
    except OSError as exc:
        assert exc.errno == errno.EXDEV and os.path.ismount(workspace(server, sid)), exc
        return False
    return True


def workspace(server: ServerProcess, sid: str) -> Path:
    return server.data_dir / "workspaces" / sid


def listing(api: httpx.Client, sid: str, path: str = "") -> dict[str, Result]:
    response = api.get(f"/v1/sandboxes/{sid}/files", params={"path": path})
    assert response.status_code == 200, response.text
    return {entry["path"]: entry for entry in response.json()["files"]}


def upload_archive(api: httpx.Client, sid: str, data: bytes, folder: str = "") -> httpx.Response:
    return api.post(f"/v1/sandboxes/{sid}/upload", files={"file": ("a.zip", data)}, data={"path": folder})


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- symlinks ----------------------------------------------------------------------------------------------


def plant_links(api: httpx.Client, sid: str, host: Host) -> None:
    plant(
        api,
        sid,
        f"ln -s {host.drop} linkdir && mkdir real && ln -s {host.drop} real/deeper && "
        f"ln -s {host.root} linkroot && ln -s {host.canary} linkfile && ln -s {host.drop}/new.txt dangling",
    )


def test_planted_symlinks_are_not_followed_by_uploads(
    server: ServerProcess, api: httpx.Client, sid: str, host: Host
) -> None:
    plant_links(api, sid, host)
    base = f"/v1/sandboxes/{sid}/files"
    for path in ("linkdir/x.txt", "real/deeper/x.txt", "linkroot/canary.txt", "linkroot/drop/x.txt"):
        response = api.put(f"{base}/{path}", content=b"pwned")
        assert (response.status_code, error_code(response)) == (400, "invalid_path"), (path, response.text)
    for folder in ("linkdir", "real/deeper", "linkroot/drop"):
        response = api.post(base, files={"file": ("x.txt", b"pwned")}, data={"path": folder})
        assert (response.status_code, error_code(response)) == (400, "invalid_path"), (folder, response.text)
    for folder in ("linkdir", "real/deeper"):
        response = upload_archive(api, sid, zip_of({"x.txt": b"pwned"}), folder)
        assert response.status_code == 400, (folder, response.text)
    for member in ("linkdir/x.txt", "real/deeper/x.txt", "linkroot/canary.txt"):
        response = upload_archive(api, sid, zip_of({"fine.txt": b"ok", member: b"pwned"}))
        assert (response.status_code, error_code(response)) == (400, "invalid_archive"), (member, response.text)
    # Writing to a name that is itself a planted link replaces the link; nothing happens at its target.
    assert api.put(f"{base}/linkfile", content=b"mine").status_code == 201
    assert api.post(base, files={"file": ("dangling", b"mine too")}).status_code == 201
    host.assert_untouched()
    files = listing(api, sid)
    assert (files["linkfile"]["type"], files["dangling"]["type"]) == ("file", "file")
    assert "fine.txt" not in files  # a refused archive writes nothing
    assert api.get(f"{base}/linkfile").content == b"mine"
    assert_clean(server, api, sid)


def test_planted_symlinks_are_not_followed_by_downloads_listings_and_deletes(
    server: ServerProcess, api: httpx.Client, sid: str, host: Host
) -> None:
    plant_links(api, sid, host)
    base = f"/v1/sandboxes/{sid}/files"
    for path in ("linkfile", "linkroot/canary.txt", "real/deeper/../../linkfile", "dangling"):
        response = api.get(f"{base}/{path}")
        assert response.status_code in (400, 404), (path, response.text)
        assert CANARY not in response.content
    for folder in ("linkdir", "linkroot", "real/deeper"):
        response = api.get(base, params={"path": folder})
        assert (response.status_code, error_code(response)) == (400, "invalid_path"), (folder, response.text)
    files = listing(api, sid)
    assert sorted(files) == ["dangling", "linkdir", "linkfile", "linkroot", "real", "real/deeper"]
    links = {path: entry for path, entry in files.items() if path != "real"}
    assert {entry["type"] for entry in links.values()} == {"symlink"}
    assert {entry["sha256"] for entry in links.values()} == {None}
    # Deleting links, or a folder holding one, removes the links only.
    for path in ("linkdir", "linkfile", "real"):
        assert api.delete(f"{base}/{path}").status_code == 204
    host.assert_untouched()
    assert sorted(listing(api, sid)) == ["dangling", "linkroot"]
    assert_clean(server, api, sid)


# --- hardlinks ---------------------------------------------------------------------------------------------


def test_hardlinks_are_not_read_or_written_through(
    server: ServerProcess, api: httpx.Client, sid: str, host: Host
) -> None:
    # From inside, a hardlink to anything outside the workspace mount is impossible.
    tried = run(api, sid, "ln /etc/passwd pw; ln /usr/bin/python3 py; echo done")
    assert tried["stdout"] == "done\n", tried
    assert "Invalid cross-device link" in tried["stderr"]
    assert not any((workspace(server, sid) / name).exists() for name in ("pw", "py"))
    # A hardlink the sandbox makes between its own files: neither name is served, and a write replaces
    # the name written, never the shared inode.
    plant(api, sid, "echo original > a.txt && ln a.txt b.txt")
    base = f"/v1/sandboxes/{sid}/files"
    for name in ("a.txt", "b.txt"):
        response = api.get(f"{base}/{name}")
        assert (response.status_code, error_code(response)) == (400, "invalid_path")
    assert api.put(f"{base}/b.txt", content=b"replaced").status_code == 201
    assert run(api, sid, "cat a.txt")["stdout"] == "original\n"
    # A hardlink to a host file (planted from the host: the jail cannot make one; a volume cannot hold one).
    if host_link(host.canary, server, sid, "leak.txt"):
        response = api.get(f"{base}/leak.txt")
        assert (response.status_code, error_code(response)) == (400, "invalid_path")
        assert CANARY not in response.content
        assert listing(api, sid)["leak.txt"]["sha256"] is None
        extracted = upload_archive(api, sid, zip_of({"leak.txt": b"through the archive"}))
        assert extracted.status_code == 201, extracted.text
        assert host_link(host.canary, server, sid, "leak2.txt")
        assert api.post(base, files={"file": ("leak2.txt", b"through multipart")}).status_code == 201
        assert api.get(f"{base}/leak.txt").content == b"through the archive"
    host.assert_untouched()  # every name was replaced; the host inode kept its content and link count
    assert_clean(server, api, sid)


# --- FIFOs, sockets, devices -------------------------------------------------------------------------------


def test_fifos_sockets_and_devices_never_block_or_leak(
    server: ServerProcess, api: httpx.Client, sid: str, isolation: str
) -> None:
    plant(
        api,
        sid,
        "mkfifo fifo && mkdir sub && mkfifo sub/fifo && "
        "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")'",
    )
    # Device nodes cannot be made in the jail (mknod: EPERM); plant /dev/zero and the root disk from the host.
    ws = workspace(server, sid)
    os.mknod(ws / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    os.mknod(ws / "disk", stat.S_IFBLK | 0o666, os.stat("/").st_dev)
    base = f"/v1/sandboxes/{sid}/files"
    # gVisor keeps the FIFOs and the socket its code makes inside the sandbox: the host never sees them at all.
    made_inside = ("fifo", "sub/fifo", "sock") if isolation == "gvisor" else ()
    for name in ("fifo", "sub/fifo", "sock", "zero", "disk"):
        started = time.monotonic()
        response = api.get(f"{base}/{name}", timeout=10)
        answer = (response.status_code, error_code(response))
        assert answer == ((404, "file_not_found") if name in made_inside else (400, "invalid_path")), response.text
        assert time.monotonic() - started < 5
    started = time.monotonic()
    files = listing(api, sid)
    assert time.monotonic() - started < 5
    planted = [name for name in ("fifo", "sub/fifo", "sock", "zero", "disk") if name not in made_inside]
    specials = {name: files[name] for name in planted}
    assert {entry["type"] for entry in specials.values()} == {"other"}
    assert {entry["sha256"] for entry in specials.values()} == {None}
    # The workspace is mounted nodev: a planted device is useless inside the jail too.
    inside = run(api, sid, "head -c 16 disk | od -An -tx1; head -c 4 zero | od -An -tx1")
    assert inside["stdout"] == "", inside
    assert "Permission denied" in inside["stderr"]
    # Uploads over them replace the names without opening them.
    assert api.put(f"{base}/fifo", content=b"now a file", timeout=10).status_code == 201
    assert api.post(base, files={"file": ("zero", b"x")}, timeout=10).status_code == 201
    extracted = upload_archive(api, sid, zip_of({"sub/fifo": b"y", "disk": b"z"}))
    assert extracted.status_code == 201, extracted.text
    assert stat.S_ISREG((ws / "disk").lstat().st_mode) and stat.S_ISREG((ws / "sub" / "fifo").lstat().st_mode)
    assert_clean(server, api, sid)


# --- a name swapped while the server works ---------------------------------------------------------------

SWAPPER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir("d")
os.symlink(sys.argv[1], "d_alt")
print("swapping", flush=True)
deadline = time.monotonic() + float(sys.argv[2])
swaps = 0
while time.monotonic() < deadline:
    # renameat2(RENAME_EXCHANGE): "d" flips between a real folder and a link to the host, atomically.
    if libc.syscall(316, -100, b"d", -100, b"d_alt", 2) == 0:
        swaps += 1
print(swaps)
"""


@pytest.mark.slow
def test_symlink_swapped_in_during_uploads_is_never_followed(
    server: ServerProcess, api: httpx.Client, sid: str, host: Host, isolation: str
) -> None:
    if isolation == "gvisor":
        pytest.skip(
            "gVisor's kernel has no renameat2(RENAME_EXCHANGE): the atomic flip this attack needs cannot be made"
        )
    assert api.put(f"/v1/sandboxes/{sid}/files/swap.py", content=SWAPPER.encode()).status_code == 201
    outcome: dict[str, Result] = {}
    swapper = threading.Thread(
        target=lambda: outcome.setdefault("run", run(api, sid, f"python3 swap.py {host.drop} 6")), daemon=True
    )
    swapper.start()
    deadline = time.monotonic() + 10
    while not (workspace(server, sid) / "d_alt").is_symlink():
        assert time.monotonic() < deadline, "the swapper never started"
        time.sleep(0.02)
    base = f"/v1/sandboxes/{sid}/files"
    statuses: list[int] = []
    attempts = 0
    while swapper.is_alive() and attempts < 300:
        attempts += 1
        statuses.append(api.put(f"{base}/d/put-{attempts}.txt", content=b"pwned").status_code)
        files = {"file": (f"multi-{attempts}.txt", b"pwned")}
        statuses.append(api.post(base, files=files, data={"path": "d"}).status_code)
        if attempts % 5 == 0:
            statuses.append(upload_archive(api, sid, zip_of({f"zip-{attempts}.txt": b"pwned"}), "d").status_code)
            response = api.get(f"{base}/d/canary.txt")
            assert CANARY not in response.content
        host.assert_untouched()
    swapper.join(60)
    assert outcome["run"]["status"] == "succeeded", outcome["run"]
    assert int(outcome["run"]["stdout"].split()[-1]) > 100  # the name really flipped, many times
    assert attempts >= 20
    assert set(statuses) <= {201, 400, 409}, set(statuses)
    assert 400 in statuses  # some uploads met the link and were refused
    host.assert_untouched()
    assert_clean(server, api, sid)


# --- archives ----------------------------------------------------------------------------------------------


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", device: tuple[int, int] = (0, 0)
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.devmajor, info.devminor = device
    return info


def _hostile_archives(host: Host) -> dict[str, bytes]:
    fine = (_member("fine.txt"), b"ok")
    link_zip = io.BytesIO()
    with zipfile.ZipFile(link_zip, "w") as zf:
        zf.writestr("fine.txt", "ok")
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, str(host.canary))
    return {
        "tar absolute": _tar(fine, (_member(f"{host.drop}/abs.txt"), b"pwned")),
        "tar dotdot": _tar(fine, (_member(f"../../../../../..{host.drop}/up.txt"), b"pwned")),
        "tar symlink": _tar(fine, (_member("link", tarfile.SYMTYPE, str(host.canary)), b"")),
        "tar symlink then file": _tar(
            (_member("d", tarfile.SYMTYPE, str(host.drop)), b""), (_member("d/through.txt"), b"pwned")
        ),
        "tar hardlink": _tar(fine, (_member("hard", tarfile.LNKTYPE, str(host.canary)), b"")),
        "tar char device": _tar(fine, (_member("mem", tarfile.CHRTYPE, device=(1, 1)), b"")),
        "tar block device": _tar(fine, (_member("disk", tarfile.BLKTYPE, device=(254, 0)), b"")),
        "tar fifo": _tar(fine, (_member("pipe", tarfile.FIFOTYPE), b"")),
        "zip symlink": link_zip.getvalue(),
        "zip absolute": zip_of({"fine.txt": b"ok", f"{host.drop}/abs.txt": b"pwned"}),
    }


def test_hostile_archives_write_nothing(server: ServerProcess, api: httpx.Client, sid: str, host: Host) -> None:
    for name, data in _hostile_archives(host).items():
        response = upload_archive(api, sid, data)
        assert (response.status_code, error_code(response)) == (400, "invalid_archive"), (name, response.text)
    assert listing(api, sid) == {}
    assert list(workspace(server, sid).iterdir()) == []
    host.assert_untouched()
    assert_clean(server, api, sid)


def test_archive_bombs_stop_at_the_workspace_quota(server: ServerProcess, api: httpx.Client) -> None:
    created = api.post("/v1/sandboxes", json={"language": "python", "limits": {"disk_mb": 4}})
    sid: str = created.json()["id"]
    zeros = b"\0" * (32 * 2**20)
    zip_bomb = zip_of({"fine.txt": b"ok", "zeros.bin": zeros})
    tar_bomb = _tar((_member("fine.txt"), b"ok"), (_member("zeros.bin"), zeros))
    many = zip_of({f"f{i}/x.txt": b"x" * 2048 for i in range(3000)})
    assert max(len(zip_bomb), len(tar_bomb)) < 2**20  # small on the wire, 32 MiB unpacked
    for name, data in (("zip bomb", zip_bomb), ("tar.gz bomb", tar_bomb), ("many members", many)):
        response = upload_archive(api, sid, data)
        assert (response.status_code, error_code(response)) == (413, "too_large"), (name, response.text)
    assert listing(api, sid) == {}
    assert_clean(server, api, sid)


# --- deleting a hostile workspace --------------------------------------------------------------------------


def test_deleting_a_hostile_sandbox_touches_nothing_outside(
    server: ServerProcess, api: httpx.Client, sid: str, host: Host
) -> None:
    plant_links(api, sid, host)
    plant(api, sid, "mkfifo fifo && chmod 000 real")
    # Nesting past the server's walk depth (a workspace that deep counts as over quota, so the run may be
    # stopped once the folders exist).
    nested = run(api, sid, """python3 -c 'import os; os.makedirs("deep/" + "d/" * 200)'""")
    assert nested["status"] in ("succeeded", "killed"), nested
    assert (workspace(server, sid) / "deep" / ("d/" * 199) / "d").is_dir()
    host_link(host.canary, server, sid, "hard")
    # Too deep to list, but never a crash or a hang.
    response = api.get(f"/v1/sandboxes/{sid}/files", params={"path": "deep"})
    assert (response.status_code, error_code(response)) == (413, "too_large")
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 204
    assert not workspace(server, sid).exists()
    host.assert_untouched()
    other = api.post("/v1/sandboxes", json={"language": "python"}).json()["id"]
    assert_clean(server, api, other)
