"""The server's log lines are JSON, and a run's exec, install and egress lines carry its run and sandbox ids."""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import ServerProcess
from test_metrics import scrape, value

# Asks the sandbox's egress proxy for a host no allowlist names; the proxy refuses and logs the decision.
DENIED = """
import socket
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(b"CONNECT evil.example:443 HTTP/1.1\\r\\nHost: evil.example:443\\r\\n\\r\\n")
print(s.recv(200).split(b"\\r\\n")[0].decode())
"""


def log_lines(server: ServerProcess, wait_for: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
        if any(wait_for in json.dumps(line) for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_run_lines_carry_ids(offline_server: ServerProcess) -> None:
    before = scrape(offline_server)
    with offline_server.client() as client, client.create() as box:
        box.write("requirements.txt", "six==1.16.0\n")
        box.write("main.py", "import six\nprint(six.__version__)\n")
        installed = box.exec(filename="main.py")
        assert installed.stdout == "1.16.0\n"
        box.write("egress.py", DENIED)
        denied = box.exec(filename="egress.py")
        assert denied.stdout.startswith("HTTP/1.1 403"), denied.output
        assert denied.egress_denied
    lines = log_lines(offline_server, denied.run_id)
    ours = [line for line in lines if line.get("sandbox_id") == box.id]
    by_run = {
        run: [line["msg"] for line in ours if line.get("run_id") == run] for run in (installed.run_id, denied.run_id)
    }
    assert "environment bound" in by_run[installed.run_id]
    assert "run finished" in by_run[installed.run_id]
    assert any(msg.startswith("egress denied evil.example:443") for msg in by_run[denied.run_id])
    assert "run finished" in by_run[denied.run_id]
    after = scrape(offline_server)
    assert value(after, "cloche_egress_denials_total") >= value(before, "cloche_egress_denials_total") + 1


def test_access_lines_are_json(server: ServerProcess) -> None:
    with server.client() as client:
        client.list()
    lines = log_lines(server, "/v1/sandboxes")
    access = [line for line in lines if line["logger"] == "uvicorn.access" and line.get("path") == "/v1/sandboxes"]
    assert access, "no JSON access line for GET /v1/sandboxes"
    assert access[-1]["method"] == "GET"
    assert access[-1]["status"] == 200
    assert "run_id" not in access[-1]  # fields bound by a run never leak into other requests' lines
