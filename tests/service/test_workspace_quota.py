"""The workspace quota through the real server: a volume per workspace (the kernel says ENOSPC), its lifecycle
across restarts, crashes and deletes, and the walk fallback whose verdict is never dropped."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerProcess, loop_devices_left, mounts_under, traversable_dir

MIB = 2**20

INODE_FLOOD = """
import errno, os
made = 0
try:
    for i in range(205_000):
        open(f"f{i}", "w").close()
        made += 1
except OSError as exc:
    print(errno.errorcode[exc.errno], made)
else:
    print("no error", made)
"""


def create(api: httpx.Client, **body: Any) -> str:
    response = api.post("/v1/sandboxes", json=body)
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    return sid


def run(api: httpx.Client, sid: str, command: str, timeout: float = 120) -> dict[str, Any]:
    response = api.post(f"/v1/sandboxes/{sid}/exec", json={"command": command, "timeout_seconds": timeout})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def workspace(server: ServerProcess, sid: str) -> Path:
    return server.data_dir / "workspaces" / sid


def image(server: ServerProcess, sid: str) -> Path:
    return server.data_dir / "volumes" / f"{sid}.img"


def used_bytes(server: ServerProcess, sid: str) -> int:
    st = os.statvfs(workspace(server, sid))
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


@pytest.mark.slow
def test_files_past_the_inode_limit_fail_inside_the_run(server: ServerProcess, api: httpx.Client) -> None:
    sid = create(api, language="python", limits={"disk_mb": 100})
    api.put(f"/v1/sandboxes/{sid}/files/flood.py", content=INODE_FLOOD.encode())
    result = run(api, sid, "python3 flood.py")
    # The run is not killed: its code sees ENOSPC at the limit (200,000 files and folders, which ext4 rounds up
    # to whole inode-table blocks: 16 per 128 MiB of image) and goes on.
    assert result["status"] == "succeeded", result
    reason, made = result["stdout"].split()
    assert reason == "ENOSPC" and 199_900 < int(made) < 200_100, result["stdout"]
    upload = api.put(f"/v1/sandboxes/{sid}/files/one-more.txt", content=b"x")
    assert (upload.status_code, upload.json()["error"]["code"]) == (413, "too_large"), upload.text
    assert run(api, sid, "rm f0 f1")["status"] == "succeeded"
    assert api.put(f"/v1/sandboxes/{sid}/files/one-more.txt", content=b"x").status_code == 201
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 204


@pytest.mark.slow
def test_repeated_writes_cannot_pass_the_disk_quota(server: ServerProcess, api: httpx.Client) -> None:
    sid = create(api, language="python", limits={"disk_mb": 100})
    for n in range(5):
        result = run(api, sid, f"dd if=/dev/zero of=big{n} bs=1M count=150")
        # dd sees ENOSPC and fails; the run is not killed, and the next one has no more room than before.
        assert (result["status"], result["exit_code"]) == ("failed", 1), result
        assert "No space left on device" in result["stderr"]
    assert used_bytes(server, sid) <= 102 * MIB
    assert run(api, sid, "rm big0 && echo freed")["stdout"] == "freed\n"
    # Deleted blocks return to the host: the sparse image shrinks (mounted with discard).
    assert image(server, sid).stat().st_blocks * 512 < 120 * MIB
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 204
    assert not image(server, sid).exists() and not workspace(server, sid).exists()


def test_uploads_past_the_quota_are_413_and_leave_no_partial_file(server: ServerProcess, api: httpx.Client) -> None:
    sid = create(api, language="python", limits={"disk_mb": 4})
    assert api.put(f"/v1/sandboxes/{sid}/files/a.bin", content=b"a" * 3 * MIB).status_code == 201
    over = api.put(f"/v1/sandboxes/{sid}/files/b.bin", content=b"b" * 3 * MIB)
    assert (over.status_code, over.json()["error"]["code"]) == (413, "too_large"), over.text
    assert "disk quota" in over.json()["error"]["message"]
    # Small members pass the byte count but each takes a 4 KiB block: the volume fills mid-extraction, and
    # ENOSPC is a 413 with no half-written file left behind.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(1000):
            archive.writestr(f"many/{i}.txt", b"x")
    response = api.post(
        f"/v1/sandboxes/{sid}/upload", files={"file": ("many.zip", buffer.getvalue(), "application/zip")}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large"), response.text
    assert "no room" in response.json()["error"]["message"]
    leftovers = run(api, sid, "find . -name '.cloche-*' | wc -l; ls -A | sort | tr '\\n' ' '")["stdout"]
    assert leftovers.split("\n")[0] == "0" and leftovers.split("\n")[1].split() == ["a.bin", "many"], leftovers
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 204


def _mark_deleted(data_dir: Path, sid: str) -> None:
    # What a crash during a delete leaves: the tombstone is written first, the workspace is still there.
    with sqlite3.connect(data_dir / "cloche.db") as db:
        tombstone = "UPDATE sandboxes SET deleted_at = '2026-01-01T00:00:00Z', deleted_reason = 'deleted' WHERE id = ?"
        db.execute(tombstone, (sid,))


@pytest.mark.slow
def test_volumes_follow_sandboxes_across_restarts_crashes_and_deletes(fresh_server: ServerProcess) -> None:
    srv = fresh_server.start()
    with httpx.Client(base_url=srv.url, timeout=120) as api:
        kept, doomed, other = create(api, limits={"disk_mb": 8}), create(api), create(api)
        for sid in (kept, doomed, other):
            root = workspace(srv, sid).stat()
            assert os.path.ismount(workspace(srv, sid)) and image(srv, sid).stat().st_mode & 0o777 == 0o600
            assert (root.st_mode & 0o777, root.st_uid) == (0o700, root.st_gid) and root.st_uid != 0
        free = os.statvfs(workspace(srv, kept))
        assert 8 * MIB <= free.f_bavail * free.f_frsize <= 10 * MIB  # the quota asked, plus ext4's rounding
        assert run(api, kept, "ls -A; echo kept > note.txt")["stdout"] == ""  # no lost+found
    srv.stop()
    assert srv.leftover_mounts == []  # a graceful stop unmounts every workspace itself
    assert not os.path.ismount(workspace(srv, kept)) and image(srv, kept).exists()

    srv.start()
    with httpx.Client(base_url=srv.url, timeout=120) as api:
        assert run(api, kept, "cat note.txt")["stdout"] == "kept\n"
    srv.crash()
    assert os.path.ismount(workspace(srv, kept))  # the kernel keeps a killed server's mounts
    _mark_deleted(srv.data_dir, doomed)
    half_made = srv.data_dir / "volumes" / "sb_halfmade.img.partial"
    half_made.write_bytes(b"")

    srv.start()
    assert not workspace(srv, doomed).exists() and not image(srv, doomed).exists()
    assert not half_made.exists()
    assert sorted(mounts_under(srv.data_dir)) == sorted([workspace(srv, kept), workspace(srv, other)])
    with httpx.Client(base_url=srv.url, timeout=120) as api:
        assert run(api, kept, "cat note.txt")["stdout"] == "kept\n"
        assert api.delete(f"/v1/sandboxes/{other}").status_code == 204
        assert not workspace(srv, other).exists() and not image(srv, other).exists()
    srv.crash()
    srv.stop()  # what the fixtures do after a crash: nothing stays mounted, no loop device stays attached
    assert srv.leftover_mounts == [workspace(srv, kept)]
    assert mounts_under(srv.data_dir) == [] and loop_devices_left(srv.data_dir) == []


@pytest.fixture(scope="module")
def walk_server() -> Iterator[ServerProcess]:
    root = traversable_dir()
    srv = ServerProcess(root / "data", env={"CLOCHE_WORKSPACE_QUOTA": "walk"}).start()
    yield srv
    srv.stop()
    subprocess.run(["rm", "-rf", str(root)], check=False)


def test_walk_fallback_never_drops_its_verdict(walk_server: ServerProcess) -> None:
    with httpx.Client(base_url=walk_server.url, timeout=120) as api:
        sid = create(api, limits={"disk_mb": 1})
        assert not os.path.ismount(workspace(walk_server, sid)) and not image(walk_server, sid).exists()
        # Over the quota and gone in a few milliseconds, long before the watchdog's next look: the check that
        # follows the run still decides.
        quick = run(api, sid, "head -c 3000000 /dev/zero > big")
        record = api.get(f"/v1/sandboxes/{sid}/runs/{quick['run_id']}").json()
        assert quick["status"] == "killed" and "disk quota" in record["error"], record
        # While over quota, the next exec starts nothing, and uploads are refused.
        refused = run(api, sid, "touch ran")
        assert refused["status"] == "killed" and "disk quota" in refused["output"], refused
        assert api.get(f"/v1/sandboxes/{sid}/files/ran").status_code == 404
        assert api.put(f"/v1/sandboxes/{sid}/files/x", content=b"x").status_code == 413
        assert api.delete(f"/v1/sandboxes/{sid}/files/big").status_code == 204
        assert run(api, sid, "touch ran")["status"] == "succeeded"


@pytest.mark.slow
def test_walk_fallback_counts_a_workspace_too_deep_to_measure_as_over(walk_server: ServerProcess) -> None:
    with httpx.Client(base_url=walk_server.url, timeout=120) as api:
        sid = create(api, limits={"disk_mb": 8})
        nested = run(api, sid, """python3 -c 'import os; os.makedirs("deep/" + "d/" * 200)'""")
        assert nested["status"] in ("succeeded", "killed"), nested
        refused = run(api, sid, "touch ran")
        assert refused["status"] == "killed" and "cannot be measured" in refused["output"], refused
        upload = api.put(f"/v1/sandboxes/{sid}/files/more.bin", content=b"y")
        assert (upload.status_code, upload.json()["error"]["code"]) == (413, "too_large")
        assert api.delete(f"/v1/sandboxes/{sid}/files/deep").status_code == 204
        assert run(api, sid, "touch ran")["status"] == "succeeded"


def without_mkfs() -> list[str]:
    """A wrapper: a private mount namespace where mkfs.ext4 is /dev/null (not executable), so no volume can be made."""
    hide = f'mount --bind /dev/null {shutil.which("mkfs.ext4")} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh"]


def test_volume_asked_where_it_cannot_work_refuses_to_start_with_a_hint(fresh_server: ServerProcess) -> None:
    fresh_server.env["CLOCHE_WORKSPACE_QUOTA"] = "volume"
    fresh_server.wrapper = without_mkfs()
    with pytest.raises(RuntimeError) as caught:
        fresh_server.start()
    said = str(caught.value)
    assert "server exited with 3" in said, said  # one line, before the server listens
    assert "cloche: cannot start: CLOCHE_WORKSPACE_QUOTA=volume cannot work" in said
    assert "mkfs.ext4 not found" in said and "CLOCHE_WORKSPACE_QUOTA=walk" in said


def test_auto_falls_back_to_the_walk_where_volumes_cannot_work(fresh_server: ServerProcess) -> None:
    fresh_server.wrapper = without_mkfs()
    fresh_server.start()
    with httpx.Client(base_url=fresh_server.url, timeout=120) as api:
        sid = create(api, limits={"disk_mb": 1})
        assert not os.path.ismount(workspace(fresh_server, sid)) and not image(fresh_server, sid).exists()
        over = run(api, sid, "head -c 3000000 /dev/zero > big")
        assert over["status"] == "killed", over  # the walk's verdict
    assert "workspace volumes unavailable" in fresh_server.log.read_text()
