"""The CLI when things go wrong, as a person meets it: one clean line, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServerProcess, free_port, traversable_dir

CLI = [sys.executable, "-c", "from cloche.cli.main import main; main()"]


def cli(*args: str, url: str | None = None, key: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    full.pop("CLOCHE_API_KEY", None)
    if url is not None:
        full["CLOCHE_URL"] = url
    if key is not None:
        full["CLOCHE_API_KEY"] = key
    return subprocess.run([*CLI, *args], env=full, capture_output=True, text=True, timeout=180)


def one_clean_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cloche: "), lines
    return lines[0]


API_KEYS = ("cli:the-right-key",)  # keyed_server's (conftest)


COMMANDS = [
    ("sandbox", "ls"),
    ("sandbox", "rm", "sb_000000000000000000000000"),
    ("logs", "sb_000000000000000000000000"),
    ("sbom", "sb_000000000000000000000000", "run_000000000000000000000000"),
    ("diff", "sb_000000000000000000000000", "run_a", "run_b"),
    ("run", "main.py"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_unreachable_server_is_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print(1)\n")
    url = f"http://127.0.0.1:{free_port()}"
    line = one_clean_line(cli(*args, "--dir", str(tmp_path), url=url) if args[0] == "run" else cli(*args, url=url))
    assert f"cannot reach the cloche server at {url}" in line
    assert "CLOCHE_URL" in line


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_wrong_key_is_one_line(keyed_server: ServerProcess, args: tuple[str, ...], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print(1)\n")
    extra = ("--dir", str(tmp_path)) if args[0] == "run" else ()
    line = one_clean_line(cli(*args, *extra, url=keyed_server.url, key="a-wrong-key"))
    assert line.startswith("cloche: unauthorized: unknown API key"), line
    assert "CLOCHE_API_KEY" in line


def test_server_errors_share_one_format(server: ServerProcess) -> None:
    missing = "sb_000000000000000000000000"
    lines = [
        one_clean_line(cli("logs", missing, url=server.url)),
        one_clean_line(cli("sandbox", "rm", missing, url=server.url)),
        one_clean_line(cli("sbom", missing, "run_x", url=server.url)),
        one_clean_line(cli("run", "--sandbox", missing, "main.py", "--dir", str(traversable_dir()), url=server.url)),
    ]
    for line in lines:
        assert re.fullmatch(r"cloche: sandbox_not_found: no sandbox '" + missing + "'.*", line), line


def test_run_names_the_sandbox_and_how_to_keep_it(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print('hi')\n")
    done = cli("run", "--dir", str(tmp_path), "main.py", url=server.url)
    assert done.returncode == 0, done.stderr
    match = re.search(r"cloche: sandbox (sb_[0-9a-f]{24}) .*--keep", done.stderr)
    assert match, done.stderr
    with server.client() as client:
        assert match.group(1) not in [b.id for b in client.list()]
    kept = cli("run", "--keep", "--dir", str(tmp_path), "main.py", url=server.url)
    match = re.search(r"cloche: kept sandbox (sb_[0-9a-f]{24}); reuse it with --sandbox \1", kept.stderr)
    assert match, kept.stderr
    with server.client() as client:
        assert match.group(1) in [b.id for b in client.list()]
        client.sandbox(match.group(1)).delete()
    assert "--keep" in (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_run_with_a_missing_folder_or_file_says_so(server: ServerProcess, tmp_path: Path) -> None:
    line = one_clean_line(cli("run", "--dir", "/definitely/missing", "main.py", url=server.url))
    assert line == "cloche: --dir /definitely/missing: no such folder"
    line = one_clean_line(cli("run", "--dir", str(tmp_path), "main.py", url=server.url))
    assert line == f"cloche: main.py: no such file in {tmp_path}"
    with server.client() as client:
        before = {b.id for b in client.list()}
    one_clean_line(cli("run", "--dir", str(tmp_path), "main.py", url=server.url))
    with server.client() as client:
        assert {b.id for b in client.list()} == before  # nothing was created for a run that cannot start


@pytest.mark.parametrize("command", [("audit", "verify"), ("audit", "export", "sb_x"), ("gc",)])
def test_data_dir_commands_refuse_a_folder_without_cloche_data(command: tuple[str, ...], tmp_path: Path) -> None:
    for where in ("/typo", str(tmp_path)):
        line = one_clean_line(cli(*command, "--data-dir", where))
        assert line.startswith(f"cloche: no cloche data in {where} "), line


def test_start_up_failure_prints_its_hint_on_one_line(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    env = {"CLOCHE_DATA_DIR": str(hidden / "data"), "CLOCHE_PORT": str(free_port())}
    env |= {"CLOCHE_UID_BASE": "471000", "CLOCHE_UID_COUNT": "10"}
    done = cli("serve", **env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    hints = [line for line in done.stderr.splitlines() if line.startswith("cloche: cannot start: ")]
    assert len(hints) == 1, done.stderr
    assert "chmod o+x" in hints[0]
