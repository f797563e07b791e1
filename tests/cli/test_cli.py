"""The cloche CLI as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ServerProcess

CLI = [sys.executable, "-c", "from cloche.cli.main import main; main()"]


def cli(server: ServerProcess, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOCHE_URL": server.url}
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_run_uploads_dir_streams_and_exits_with_code(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.py").write_text("NAME = 'cli'\n")
    (tmp_path / "main.py").write_text(
        "import sys\nsys.path.insert(0, 'lib')\nfrom helper import NAME\n"
        "print('hello', NAME, sys.argv[1:])\nprint('warn', file=sys.stderr)\nsys.exit(7)\n"
    )
    done = cli(server, "run", "--dir", str(tmp_path), "main.py", "x")
    assert done.returncode == 7
    assert done.stdout == "hello cli ['x']\n"
    assert "warn" in done.stderr


def test_sandbox_ls_and_rm(server: ServerProcess) -> None:
    with server.client() as client:
        box = client.create(language="node")
    listed = cli(server, "sandbox", "ls")
    assert box.id in listed.stdout
    assert "node" in listed.stdout
    removed = cli(server, "sandbox", "rm", box.id)
    assert removed.returncode == 0
    again = cli(server, "sandbox", "rm", box.id)
    assert again.returncode == 1
    assert "deleted" in again.stderr
