"""Exec over real HTTP in the real jail: results, streams, limits, and what survives between runs."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests_support import pool_processes_of, run_command, sse_exec


@pytest.fixture
def sid(http: httpx.Client) -> str:
    sandbox_id: str = http.post("/v1/sandboxes", json={"language": "python"}).json()["id"]
    return sandbox_id


def run(http: httpx.Client, sid: str, **body: object) -> dict[str, object]:
    response = http.post(f"/v1/sandboxes/{sid}/exec", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_filename_exec_and_fields(http: httpx.Client, sid: str) -> None:
    code = b"import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n"
    http.post(f"/v1/sandboxes/{sid}/files", files={"file": ("main.py", code)})
    result = run(http, sid, filename="main.py")
    assert result["status"] == "failed"
    assert result["exit_code"] == 3
    assert result["stdout"] == "out\n"
    assert result["stderr"] == "err\n"
    assert result["output"] == "out\nerr\n"
    assert result["truncated"] is False
    assert str(result["run_id"]).startswith("run_")
    assert isinstance(result["duration_ms"], int)


def test_node_entry_and_language_follows_file(http: httpx.Client) -> None:
    sid = http.post("/v1/sandboxes").json()["id"]
    http.put(f"/v1/sandboxes/{sid}/files/app.mjs", content=b"console.log('esm', 40 + 2)\n")
    http.put(f"/v1/sandboxes/{sid}/files/app.cjs", content=b"console.log(require('path').sep)\n")
    assert run(http, sid, filename="app.mjs")["stdout"] == "esm 42\n"
    assert run(http, sid, filename="app.cjs")["stdout"] == "/\n"
    assert http.get(f"/v1/sandboxes/{sid}").json()["language"] == "node"


def test_args_stdin_env(http: httpx.Client) -> None:
    sid = http.post("/v1/sandboxes", json={"env": {"SANDBOX_VAR": "s"}}).json()["id"]
    code = b"import os,sys\nprint(sys.argv[1:], sys.stdin.read(), os.environ['SANDBOX_VAR'], os.environ['X'])\n"
    http.put(f"/v1/sandboxes/{sid}/files/a.py", content=code)
    result = run(http, sid, filename="a.py", args=["1", "two"], stdin="piped", env={"X": "y"})
    assert result["stdout"] == "['1', 'two'] piped s y\n"


def test_files_persist_between_execs(http: httpx.Client, sid: str) -> None:
    assert run(http, sid, command="echo 41 > state.txt")["exit_code"] == 0
    assert run(http, sid, command="cat state.txt")["stdout"] == "41\n"
    assert http.get(f"/v1/sandboxes/{sid}/files/state.txt").content == b"41\n"


def test_timeout_kills_everything(http: httpx.Client, sid: str, server: object) -> None:
    started = time.monotonic()
    result = run(http, sid, command="sleep 1000 & setsid sleep 1000 & sleep 1000", timeout_seconds=2)
    assert result["status"] == "timed_out"
    assert result["exit_code"] is None
    assert time.monotonic() - started < 10
    assert pool_processes_of(server) == []


def test_output_cap_truncates(http: httpx.Client, sid: str) -> None:
    result = run(http, sid, command="yes")
    assert result["status"] == "output_limit"
    assert result["truncated"] is True
    assert 0 < len(str(result["stdout"])) <= 1_048_576


def test_output_flood_without_newlines(http: httpx.Client, sid: str) -> None:
    result = run(http, sid, command="head -c 5000000 /dev/zero | tr '\\0' x")
    assert result["truncated"] is True
    assert "\n" not in str(result["stdout"])


def test_daemon_does_not_outlive_its_run(http: httpx.Client, sid: str, server: object) -> None:
    result = run(http, sid, command="(setsid sleep 300 &) ; nohup sleep 300 >/dev/null 2>&1 & echo started")
    assert result["stdout"] == "started\n"
    time.sleep(0.3)
    assert pool_processes_of(server) == []


def test_jail_view(http: httpx.Client, sid: str, server: Any) -> None:
    probe = (
        "id -u; hostname; pwd; test -e /sys && echo sys; test -e /root && echo root; "
        "touch /usr/x 2>/dev/null || echo ro; cat /proc/1/cmdline | tr '\\0' ' '"
    )
    out = str(run(http, sid, command=probe)["stdout"]).splitlines()
    assert out[:5] == ["1000", "sandbox", "/sandbox", "ro", out[4]]
    # No host path leaks through pid 1's command line (options travel through --args FD).
    assert str(server.data_dir) not in out[4] and ".venv" not in out[4] and "site-packages" not in out[4]


def test_no_network(http: httpx.Client, sid: str) -> None:
    code = (
        "import socket\n"
        "try:\n"
        " socket.create_connection(('1.1.1.1', 80), timeout=3)\n"
        " print('open')\n"
        "except OSError as e:\n"
        " print('blocked', e.errno)\n"
    )
    http.put(f"/v1/sandboxes/{sid}/files/net.py", content=code.encode())
    assert str(run(http, sid, filename="net.py")["stdout"]).startswith("blocked")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"filename": "missing.py"}, 404, "file_not_found"),
        ({"filename": "x.rs"}, 400, "unsupported"),
        ({"filename": "x.rb"}, 400, "unsupported"),
        ({"filename": "../x.py"}, 400, "invalid_path"),
        ({}, 422, "validation_error"),
        ({"filename": "a.py", "command": "ls"}, 422, "validation_error"),
        ({"command": "   "}, 422, "validation_error"),
        ({"command": "ls", "timeout_seconds": -1}, 422, "validation_error"),
    ],
)
def test_exec_bad_input(http: httpx.Client, sid: str, body: dict[str, object], status: int, code: str) -> None:
    response = http.post(f"/v1/sandboxes/{sid}/exec", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_sse_stream(http: httpx.Client, sid: str) -> None:
    body = {"command": "echo one; sleep 0.2; echo two >&2; exit 4"}
    events = sse_exec(http, sid, body)
    kinds = [k for k, _ in events]
    assert kinds == ["stdout", "stderr", "done"]
    done = events[-1][1]
    assert isinstance(done, dict)
    assert done["exit_code"] == 4
    assert done["output"] == "one\ntwo\n"


def test_sse_disconnect_kills_the_run(http: httpx.Client, sid: str, server: object) -> None:
    body = {"command": "echo go; sleep 600"}
    with http.stream("POST", f"/v1/sandboxes/{sid}/exec", json=body, headers={"Accept": "text/event-stream"}) as r:
        for line in r.iter_lines():
            if "go" in line:
                break
    deadline = time.monotonic() + 10
    while pool_processes_of(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool_processes_of(server) == []
    runs = http.get(f"/v1/sandboxes/{sid}/runs").json()["runs"]
    assert runs[0]["status"] == "killed"


def test_runs_history(http: httpx.Client, sid: str) -> None:
    first = run(http, sid, command="echo a")
    second = run(http, sid, command="echo b")
    listed = http.get(f"/v1/sandboxes/{sid}/runs").json()["runs"]
    assert [r["run_id"] for r in listed[:2]] == [second["run_id"], first["run_id"]]
    record = http.get(f"/v1/sandboxes/{sid}/runs/{first['run_id']}").json()
    assert record["stdout"] == "a\n"
    assert record["argv"] == ["/bin/sh", "-c", "echo a"]
    missing = http.get(f"/v1/sandboxes/{sid}/runs/run_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "run_not_found"


def test_oom_kill_of_a_child_never_reports_exit_code_zero(http: httpx.Client, sid: str) -> None:
    # The shell survives its child's OOM kill and exits 0; the run still ended by the memory limit.
    command = "python3 -c 'b = bytearray(512 * 1024 * 1024)'; exit 0"
    result = run_command(http, sid, command, limits={"memory_mb": 64})
    assert result["status"] == "oom_killed", result
    assert result["exit_code"] is None, result
