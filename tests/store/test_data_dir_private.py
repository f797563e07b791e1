"""The data dir keeps other local users out: nothing in it is readable by another uid, checked at start-up."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServerProcess, free_port, traversable_dir

NOBODY = 65534
SECRET = "sk-live-qzxwvk-secret-value"


def read_as(uid: int, path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["head", "-c", "64", str(path)], user=uid, group=uid, capture_output=True, timeout=30)


def test_another_local_uid_cannot_read_the_metadata(server: ServerProcess) -> None:
    with server.client() as client:
        box = client.create(env={"API_TOKEN": SECRET})
        assert box.exec(command="printenv API_TOKEN").stdout == SECRET + "\n"  # sandbox uids still get in
        files = [server.data_dir / name for name in ("cloche.db", "cloche.db-wal", "cloche.db-shm")]
        for path in files:
            assert path.exists(), path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            denied = read_as(NOBODY, path)
            assert denied.returncode != 0 and b"Permission denied" in denied.stderr, (path, denied)
        assert SECRET.encode() in b"".join(p.read_bytes() for p in files)  # the secret is there to be read
        for entry in [server.data_dir, *server.data_dir.iterdir()]:
            mode = stat.S_IMODE(entry.lstat().st_mode)
            assert not mode & 0o066, f"{entry} is {oct(mode)}: group or others may read or write it"
        listing = subprocess.run(["ls", str(server.data_dir)], user=NOBODY, capture_output=True, timeout=30)
        assert listing.returncode != 0
        box.delete()


def test_start_up_makes_an_old_data_dir_private(fresh_server: ServerProcess) -> None:
    root = fresh_server.data_dir
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    with sqlite3.connect(root / "cloche.db") as db:
        db.execute("CREATE TABLE left_by_an_older_version (x)")
    os.chmod(root / "cloche.db", 0o644)
    (root / "notes.txt").write_text("an operator's file\n")
    os.chmod(root / "notes.txt", 0o666)
    fresh_server.start()
    assert stat.S_IMODE(root.stat().st_mode) == 0o711
    assert stat.S_IMODE((root / "cloche.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "notes.txt").stat().st_mode) == 0o600
    assert read_as(NOBODY, root / "cloche.db").returncode != 0


def test_a_data_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root = traversable_dir() / "data"
    root.mkdir()
    os.chown(root, NOBODY, NOBODY)
    env = {**os.environ, "CLOCHE_DATA_DIR": str(root), "CLOCHE_PORT": str(free_port())}
    env |= {"CLOCHE_UID_BASE": "472000", "CLOCHE_UID_COUNT": "10"}
    cli = [sys.executable, "-c", "from cloche.cli.main import main; main()", "serve"]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    hint = [line for line in done.stderr.splitlines() if line.startswith("cloche: cannot start: ")]
    assert len(hint) == 1, done.stderr
    assert f"{root} is owned by uid {NOBODY}" in hint[0] and "chown" in hint[0]
    assert not (root / "cloche.db").exists()


@pytest.mark.parametrize("name", ["cloche.db", "audit.jsonl"])
def test_private_files_are_created_private(tmp_path: Path, name: str) -> None:
    from cloche.paths import DataPaths
    from cloche.store.audit_log import AuditLog
    from cloche.store.sqlite import SqliteMetadataStore

    os.umask(0o022)
    paths = DataPaths(tmp_path / "data")
    paths.create()
    store = SqliteMetadataStore(paths.db)
    log = AuditLog(paths.root)
    log.append("probe", None)
    try:
        assert stat.S_IMODE((paths.root / name).stat().st_mode) == 0o600
    finally:
        store.close()
        log.close()
