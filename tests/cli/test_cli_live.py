"""The CLI as it feels to use: output streams as printed, installs show on stderr, runs can be inspected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import ServerProcess

CLI = [sys.executable, "-c", "from cloche.cli.main import main; main()"]


def env_for(server: ServerProcess) -> dict[str, str]:
    return {**os.environ, "CLOCHE_URL": server.url}


def cli(server: ServerProcess, *args: str, merged: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; ``merged`` sends stderr into stdout, in the order a terminal would show."""
    stderr = subprocess.STDOUT if merged else subprocess.PIPE
    return subprocess.run(
        [*CLI, *args], env=env_for(server), stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=180
    )


def test_run_streams_output_as_it_is_printed(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(
        "import sys, time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')\nsys.exit(5)\n"
    )
    proc = subprocess.Popen(
        [*CLI, "run", "--dir", str(tmp_path), "main.py"],
        env=env_for(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        seen_first = time.monotonic()
        assert proc.poll() is None  # the program is still sleeping: the line came as it was printed
        assert proc.stdout.readline() == "second\n"
        assert time.monotonic() - seen_first > 1.5
        assert proc.wait(timeout=60) == 5
    finally:
        proc.kill()
        proc.wait()


def test_run_shows_install_progress_on_stderr(offline_server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six==1.15.0\nidna==3.6\n")
    (tmp_path / "main.py").write_text("import six\nprint(six.__version__)\n")
    done = cli(offline_server, "run", "--dir", str(tmp_path), "main.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1.15.0\n"  # stdout is the program's alone
    assert "Resolving dependencies: six==1.15.0, idna==3.6" in done.stderr
    assert "Installed idna, six" in done.stderr or "Installed six, idna" in done.stderr
    # Merged as a terminal shows them: progress first, then the program's output. The second sandbox finds
    # the environment in the store: that is reported as a reuse, never as an install.
    merged = cli(offline_server, "run", "--dir", str(tmp_path), "main.py", merged=True)
    assert merged.returncode == 0
    order = [merged.stdout.index(text) for text in ("Resolving dependencies", "Reused an environment", "1.15.0\n")]
    assert order == sorted(order)
    assert "Installed" not in merged.stdout and "Installing" not in merged.stdout


def test_run_reports_install_failure_and_unlisted_imports(offline_server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("not-a-real-package==9.9\n")
    (tmp_path / "main.py").write_text("print('never')\n")
    failed = cli(offline_server, "run", "--dir", str(tmp_path), "main.py")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "cloche: install failed:" in failed.stderr and "not-a-real-package" in failed.stderr
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    (tmp_path / "main.py").write_text("import six\nimport yaml\n")
    noted = cli(offline_server, "run", "--dir", str(tmp_path), "main.py")
    assert noted.returncode == 1 and "No module named 'yaml'" in noted.stderr
    assert "note: 'yaml' is imported but not listed in the manifest (add pyyaml)" in noted.stderr


def test_logs_sbom_and_diff(offline_server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import six\nprint('six', six.__version__)\n")
    with offline_server.client() as client, client.create() as box:
        for pins in ("six==1.15.0\n", "six==1.16.0\nidna==3.6\n"):  # two runs in one kept sandbox
            (tmp_path / "requirements.txt").write_text(pins)
            assert cli(offline_server, "run", "--sandbox", box.id, "--dir", str(tmp_path), "main.py").returncode == 0
        second, first = (box.run(r.run_id) for r in box.runs().runs)
        assert second.stdout == "six 1.16.0\n"

        listed = cli(offline_server, "logs", box.id)
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[0] for line in listed.stdout.splitlines()] == [second.run_id, first.run_id]
        assert "succeeded" in listed.stdout and "python3 main.py" in listed.stdout
        one = cli(offline_server, "logs", box.id, "--run", first.run_id)
        assert one.stdout == "Installing six==1.15.0...\nsix 1.15.0\n"
        assert f"{first.run_id} succeeded (exit 0" in one.stderr

        sbom = cli(offline_server, "sbom", box.id, second.run_id)
        document = json.loads(sbom.stdout)
        assert document["bomFormat"] == "CycloneDX"
        assert sorted(c["name"] for c in document["components"]) == ["idna", "six"]

        diff = cli(offline_server, "diff", box.id, first.run_id, second.run_id)
        assert diff.returncode == 0, diff.stderr
        assert diff.stdout.splitlines() == [
            f"dependencies {first.run_id} -> {second.run_id}: 2 change(s)",
            "+ idna 3.6 (BSD-3-Clause)",
            "~ six 1.15.0 -> 1.16.0",
        ]
        raw = json.loads(cli(offline_server, "diff", box.id, first.run_id, second.run_id, "--json").stdout)
        assert [c["name"] for c in raw["added"]] == ["idna"]

    missing = cli(offline_server, "logs", box.id)
    assert missing.returncode == 1
    assert missing.stderr.startswith("cloche: sandbox_not_found: ")


def test_process_commands_start_list_follow_and_stop(server: ServerProcess) -> None:
    with server.client() as client:
        box = client.create()
    try:
        started = cli(server, "process", "start", box.id, "echo up; echo warn >&2; sleep 600")
        assert started.returncode == 0, started.stderr
        process_id = started.stdout.strip()
        assert process_id.startswith("rs_")
        listed = cli(server, "process", "ls", box.id)
        assert process_id in listed.stdout and "running" in listed.stdout
        deadline = time.monotonic() + 30
        while "up" not in (logs := cli(server, "process", "logs", box.id, process_id)).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (logs.stdout, logs.stderr) == ("up\n", "warn\n")
        assert cli(server, "process", "url", box.id, "8000").stdout.strip().endswith(f"/{box.id}/ports/8000/")
        assert cli(server, "process", "stop", box.id, process_id).stdout.strip() == f"{process_id} killed"
        finished = cli(server, "process", "start", box.id, "echo done")
        followed = cli(server, "process", "logs", "--follow", box.id, finished.stdout.strip())
        assert followed.stdout == "done\n" and "succeeded" in followed.stderr
        missing = cli(server, "process", "stop", box.id, "rs_000000000000000000000000")
        assert missing.returncode != 0 and "process_not_found" in missing.stderr
    finally:
        with server.client() as client:
            client.sandbox(box.id).delete()
