"""File routes: multipart uploads, raw PUT/GET, listing, delete, archives, and hostile names."""

from __future__ import annotations

import hashlib
import io
import tarfile

import httpx
import pytest

from tests_support import zip_of


@pytest.fixture
def sid(http: httpx.Client) -> str:
    sandbox_id: str = http.post("/v1/sandboxes", json={"language": "python"}).json()["id"]
    return sandbox_id


def test_single_upload_returns_filename(http: httpx.Client, sid: str) -> None:
    response = http.post(f"/v1/sandboxes/{sid}/files", files={"file": ("main.py", b"print(1)\n")})
    assert response.status_code == 201
    body = response.json()
    assert body["filename"] == "main.py"
    assert body["files"][0]["sha256"] == hashlib.sha256(b"print(1)\n").hexdigest()


def test_several_files_into_a_folder(http: httpx.Client, sid: str) -> None:
    files = [("file", ("a.py", b"a")), ("file", ("b.txt", b"bb"))]
    response = http.post(f"/v1/sandboxes/{sid}/files", files=files, data={"path": "pkg/sub"})
    assert response.status_code == 201
    assert response.json()["filename"] is None
    listing = http.get(f"/v1/sandboxes/{sid}/files", params={"path": "pkg"}).json()["files"]
    paths = {f["path"]: f for f in listing}
    assert paths["pkg/sub/a.py"]["size"] == 1
    assert paths["pkg/sub/b.txt"]["size"] == 2
    assert paths["pkg/sub"]["type"] == "dir"


def test_put_get_delete_raw(http: httpx.Client, sid: str) -> None:
    data = bytes(range(256)) * 10
    put = http.put(f"/v1/sandboxes/{sid}/files/data/blob.bin", content=data)
    assert put.status_code == 201
    assert put.json()["size"] == len(data)
    assert http.get(f"/v1/sandboxes/{sid}/files/data/blob.bin").content == data
    assert http.delete(f"/v1/sandboxes/{sid}/files/data/blob.bin").status_code == 204
    missing = http.get(f"/v1/sandboxes/{sid}/files/data/blob.bin")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "file_not_found"


def test_upload_without_file_field(http: httpx.Client, sid: str) -> None:
    response = http.post(f"/v1/sandboxes/{sid}/files", data={"path": "x"})
    assert response.status_code == 422


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/../../x", "x" * 300])
def test_hostile_upload_names_are_refused(http: httpx.Client, sid: str, name: str) -> None:
    response = http.post(f"/v1/sandboxes/{sid}/files", files={"file": (name, b"pwned")})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_path"


def test_nul_in_path_is_refused(http: httpx.Client, sid: str) -> None:
    response = http.put(f"/v1/sandboxes/{sid}/files/a%00b", content=b"x")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_path"


def test_hostile_folder_is_refused(http: httpx.Client, sid: str) -> None:
    response = http.post(f"/v1/sandboxes/{sid}/files", files={"file": ("a", b"x")}, data={"path": "../.."})
    assert response.status_code == 400


def test_zip_and_tar_keep_structure(http: httpx.Client, sid: str) -> None:
    archive = zip_of({"app/main.py": "print('zip')\n", "app/lib/util.py": "X = 1\n"})
    response = http.post(f"/v1/sandboxes/{sid}/upload", files={"file": ("a.zip", archive)})
    assert response.status_code == 201, response.text
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("t/readme.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    response = http.post(
        f"/v1/sandboxes/{sid}/upload", files={"file": ("a.tgz", tar_buffer.getvalue())}, data={"path": "dest"}
    )
    assert response.status_code == 201, response.text
    assert http.get(f"/v1/sandboxes/{sid}/files/app/lib/util.py").content == b"X = 1\n"
    assert http.get(f"/v1/sandboxes/{sid}/files/dest/t/readme.txt").content == b"hi"


def test_zip_slip_writes_nothing(http: httpx.Client, sid: str) -> None:
    archive = zip_of({"fine.txt": "ok", "a/../../x": "pwned"})
    response = http.post(f"/v1/sandboxes/{sid}/upload", files={"file": ("evil.zip", archive)})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_archive"
    names = [f["path"] for f in http.get(f"/v1/sandboxes/{sid}/files").json()["files"]]
    assert names == []


def test_not_an_archive(http: httpx.Client, sid: str) -> None:
    response = http.post(f"/v1/sandboxes/{sid}/upload", files={"file": ("x.zip", b"just text")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_archive"


def test_symlink_planted_by_exec_is_not_followed(http: httpx.Client, sid: str, tmp_path: object) -> None:
    # The jailed program plants links towards host paths; uploads and downloads must not go through them.
    plant = "ln -s /etc evil_dir && ln -s /etc/hostname evil_file && ln -s /etc/passwd target.txt"
    assert http.post(f"/v1/sandboxes/{sid}/exec", json={"command": plant}).json()["exit_code"] == 0
    through_dir = http.post(f"/v1/sandboxes/{sid}/files", files={"file": ("x", b"pwn")}, data={"path": "evil_dir"})
    assert through_dir.status_code == 400
    assert http.get(f"/v1/sandboxes/{sid}/files/evil_file").status_code == 400
    # Writing to a name that is a planted link replaces the link; the host file is untouched.
    with open("/etc/passwd", "rb") as f:
        before = f.read()
    assert http.put(f"/v1/sandboxes/{sid}/files/target.txt", content=b"mine").status_code == 201
    with open("/etc/passwd", "rb") as f:
        assert f.read() == before
    assert http.get(f"/v1/sandboxes/{sid}/files/target.txt").content == b"mine"


def test_listing_shows_symlinks_without_following(http: httpx.Client, sid: str) -> None:
    http.post(f"/v1/sandboxes/{sid}/exec", json={"command": "ln -s / rootlink && mkfifo pipe"})
    files = {f["path"]: f for f in http.get(f"/v1/sandboxes/{sid}/files").json()["files"]}
    assert files["rootlink"]["type"] == "symlink"
    assert files["rootlink"]["sha256"] is None
    assert files["pipe"]["type"] == "other"
    assert http.get(f"/v1/sandboxes/{sid}/files/pipe").status_code == 400


def test_too_large_upload_is_413(http: httpx.Client, sid: str) -> None:
    big = b"\0" * (65 * 1024 * 1024)
    response = http.put(f"/v1/sandboxes/{sid}/files/big.bin", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
