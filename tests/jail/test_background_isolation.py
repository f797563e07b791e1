"""Background processes and the ports proxy against escapes, abuse and neighbours, through a real server.

Each test asserts that the forbidden thing did not happen (a background process reaching the server, the host's
network or another sandbox's port socket; a port request reaching anything but the sandbox's own program; a
background attack hurting the sandbox's next exec), then that the host is clean once the processes are stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _bwrap import FORK_BOMB

from conftest import ServerProcess
from tests_support import assert_clean, run_command

# Run inside sandbox A: every way toward the server, the host and sandbox B it can try, each reported.
PROBE = """
import json, os, socket, sys
server_port, b_socket = int(sys.argv[1]), sys.argv[2]
found = {}
def attempt(name, family, address):
    with socket.socket(family) as s:
        s.settimeout(3)
        try:
            s.connect(address)
            found[name] = "connected"
        except OSError as exc:
            found[name] = type(exc).__name__
attempt("server", socket.AF_INET, ("127.0.0.1", server_port))
attempt("b_port", socket.AF_INET, ("127.0.0.1", 8000))
attempt("b_socket", socket.AF_UNIX, b_socket)
runs = os.path.dirname(os.path.dirname(b_socket))
attempt("b_socket_via_run", socket.AF_UNIX, "/run/" + os.path.relpath(b_socket, runs))
found["own_folder"] = sorted(os.listdir("/run/resident"))
found["run"] = sorted(os.listdir("/run"))
print("RESULT " + json.dumps(found), flush=True)
"""


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def new_sandbox(api: httpx.Client) -> str:
    sid: str = api.post("/v1/sandboxes", json={}).json()["id"]
    return sid


def start(api: httpx.Client, sid: str, command: str, **body: Any) -> str:
    answer = api.post(f"/v1/sandboxes/{sid}/exec", json={"command": command, "background": True, **body})
    assert answer.status_code == 200 and answer.json()["status"] == "running", answer.text
    process_id: str = answer.json()["process_id"]
    return process_id


def wait_for_port(api: httpx.Client, sid: str, port: int) -> httpx.Response:
    deadline = time.monotonic() + 60
    while (answer := api.get(f"/v1/sandboxes/{sid}/ports/{port}/")).status_code == 404:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    return answer


def wait_ended(api: httpx.Client, sid: str, process_id: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (info := api.get(f"/v1/sandboxes/{sid}/processes/{process_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    return info


def stop_all(api: httpx.Client, sid: str) -> None:
    for process in api.get(f"/v1/sandboxes/{sid}/processes").json()["processes"]:
        assert api.delete(f"/v1/sandboxes/{sid}/processes/{process['process_id']}").status_code == 200


def test_a_background_process_reaches_neither_the_server_nor_another_sandboxs_port(
    server: ServerProcess, api: httpx.Client
) -> None:
    b, a = new_sandbox(api), new_sandbox(api)
    b_process = start(api, b, "python3 -m http.server 8000")
    assert wait_for_port(api, b, 8000).status_code == 200
    b_socket = server.data_dir / "run" / b_process / "port-8000.sock"
    assert b_socket.is_socket()
    assert api.put(f"/v1/sandboxes/{a}/files/probe.py", content=PROBE.encode()).status_code == 201
    a_process = start(api, a, f"python3 probe.py {server.port} {b_socket}")
    assert wait_ended(api, a, a_process)["status"] == "succeeded"
    log = api.get(f"/v1/sandboxes/{a}/processes/{a_process}/logs").json()["output"]
    found = json.loads(log.split("RESULT ", 1)[1])
    assert found["server"] in ("ConnectionRefusedError", "OSError")  # its own loopback: no server there
    assert found["b_port"] == "ConnectionRefusedError"  # B's port is in B's network namespace only
    assert found["b_socket"] == "FileNotFoundError" and found["b_socket_via_run"] == "FileNotFoundError"
    assert found["own_folder"] == [] and found["run"] == ["cloche", "resident"]  # egress, its own sockets
    assert api.get(f"/v1/sandboxes/{b}/ports/8000/").status_code == 200  # B untouched
    stop_all(api, a)
    stop_all(api, b)
    assert not b_socket.exists() and list((server.data_dir / "run").glob("rs_*")) == []
    assert_clean(server, api, a)


def test_a_port_request_reaches_only_the_sandboxs_own_program(server: ServerProcess, api: httpx.Client) -> None:
    sid = new_sandbox(api)
    start(api, sid, "python3 -m http.server 8000")
    assert "SimpleHTTP" in wait_for_port(api, sid, 8000).headers["server"]
    # The server's own port: nothing in the jail listens there, and the host's is never tried.
    refused = api.get(f"/v1/sandboxes/{sid}/ports/{server.port}/health")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "port_not_listening"
    # Paths that climb are the sandbox program's business: they reach it, never the server's routes.
    for path in ("..%2F..%2F..%2F..%2Fhealth", "%2e%2e/%2e%2e/%2e%2e/%2e%2e/health", "//127.0.0.1:1/"):
        raw = f"{server.url}/v1/sandboxes/{sid}/ports/8000/{path}"
        answer = api.send(api.build_request("GET", httpx.URL(raw)))
        assert "SimpleHTTP" in answer.headers.get("server", ""), (path, answer.status_code, answer.text)
        assert '"status":"ok"' not in answer.text.replace(" ", "")
    stop_all(api, sid)
    assert_clean(server, api, sid)


def test_background_abuse_stays_in_its_own_limits(server: ServerProcess, api: httpx.Client) -> None:
    sid = new_sandbox(api)
    assert api.put(f"/v1/sandboxes/{sid}/files/bomb.py", content=FORK_BOMB.encode()).status_code == 201
    start(api, sid, "python3 bomb.py", limits={"pids": 32})
    flood = start(api, sid, "yes flooding-the-log")
    time.sleep(2)
    # The sandbox's next exec runs normally beside them, and the server answers.
    result = run_command(api, sid, "echo ok", default_timeout=30)
    assert (result["status"], result["stdout"]) == ("succeeded", "ok\n"), result
    assert api.get("/health").status_code == 200
    logs = api.get(f"/v1/sandboxes/{sid}/processes/{flood}/logs").json()
    assert logs["dropped"] is False or logs["start"] > 0
    assert len(logs["output"].encode()) <= 1_048_576  # the kept tail, however much it printed
    assert api.get(f"/v1/sandboxes/{sid}/processes/{flood}").json()["status"] == "running"  # output never kills it
    stop_all(api, sid)
    assert_clean(server, api, sid)


def test_a_sandbox_runs_at_most_its_share_of_long_lived_processes(server: ServerProcess, api: httpx.Client) -> None:
    sid = new_sandbox(api)
    for _ in range(8):  # CLOCHE_MAX_RESIDENTS_PER_SANDBOX's default
        start(api, sid, "sleep 600")
    refused = api.post(f"/v1/sandboxes/{sid}/exec", json={"command": "sleep 600", "background": True})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "resident_limit"
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 204
    assert list((server.data_dir / "run").glob("rs_*")) == []
    assert_clean(server, api, new_sandbox(api))


def test_the_relay_is_staged_readable_by_sandbox_uids(server: ServerProcess) -> None:
    staged = list((server.data_dir / "jail" / "bin").glob("cloche-port-relay-*"))
    assert len(staged) == 1 and staged[0].stat().st_mode & 0o005 == 0o005
    sources = Path(__file__).resolve().parents[2] / "src" / "cloche" / "jail"
    for name in ("port_relay_jail.py", "egress_launcher_jail.py"):
        assert (staged[0] / name).stat().st_mode & 0o004
        assert (staged[0] / name).read_text() == (sources / name).read_text()
