"""Background processes over HTTP: a FastAPI server started in a sandbox answers through the ports proxy (HTTP and
WebSocket), only for its tenant, and stopping it frees everything (process, cgroup, socket folder).

The server's Python installs come from a folder of real wheels (FastAPI, uvicorn and their dependencies, copied
from the machine's local package mirror), so no public registry is needed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from cloche.api.state import cgroup_parent
from cloche.store.audit_log import export
from conftest import ServerProcess, pool_processes, running_server, server_cgroup_parents, traversable_dir
from tests_support import leftover_cgroups, sse_events

MIRROR = Path("/opt/pypi/files")
WHEELS = (
    "fastapi-0.142.2-",
    "starlette-1.7.0-",
    "pydantic-2.13.5-",
    "pydantic_core-2.46.5-",
    "annotated_types-",
    "annotated_doc-",
    "typing_extensions-",
    "typing_inspection-",
    "anyio-4.15.1-",
    "idna-",
    "sniffio-",
    "uvicorn-0.54.0-",
    "h11-0.16.0-",
    "click-8.5.0-",
    "websockets-15.0.1-",
    "opentelemetry_api-",
)
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"
APP = """
import uvicorn
import websockets  # uvicorn's WebSocket support
from fastapi import FastAPI, Request, WebSocket

app = FastAPI()

@app.get("/")
def root():
    return {"hello": "from the sandbox"}

@app.get("/items/{item}")
def item(item: int, q: str = "", request: Request = None):
    return {"item": item, "q": q, "prefix": request.headers.get("x-forwarded-prefix"),
            "authorization": request.headers.get("authorization")}

@app.post("/echo")
async def echo(request: Request):
    return {"body": (await request.body()).decode()}

@app.websocket("/ws")
async def ws(socket: WebSocket):
    await socket.accept()
    while True:
        await socket.send_text("echo: " + await socket.receive_text())

print("starting", flush=True)
uvicorn.run(app, host="0.0.0.0", port=8000)
"""


def fastapi_wheels(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for prefix in WHEELS:
        found = sorted(MIRROR.glob(f"{prefix}*.whl"))
        if not found:
            pytest.fail(f"the local mirror has no {prefix}* wheel: the port proxy cannot be tested without it")
        shutil.copy(found[-1], folder)
    return folder


@pytest.fixture(scope="module")
def served() -> Iterator[ServerProcess]:
    root = traversable_dir()
    wheels = fastapi_wheels(root / "wheels")
    env = {
        "CLOCHE_PYTHON_WHEEL_DIR": str(wheels),
        "CLOCHE_API_KEYS": f"alice:{ALICE},bob:{BOB}",
        "CLOCHE_REAPER_INTERVAL_SECONDS": "0.5",
    }
    with running_server(env) as srv:
        yield srv
    shutil.rmtree(root, ignore_errors=True)


def api(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def start(client: httpx.Client, sid: str, **body: Any) -> dict[str, Any]:
    answer = client.post(f"/v1/sandboxes/{sid}/exec", json={"background": True, **body})
    assert answer.status_code == 200, answer.text
    process: dict[str, Any] = answer.json()
    return process


def wait_for_port(client: httpx.Client, sid: str, port: int, seconds: float = 120) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        answer = client.get(f"/v1/sandboxes/{sid}/ports/{port}/")
        if answer.status_code != 404 or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def socket_folders(server: ServerProcess) -> list[Path]:
    return list((server.data_dir / "run").glob("rs_*"))


def test_a_background_fastapi_server_answers_through_the_ports_proxy(served: ServerProcess) -> None:
    with api(served, ALICE) as alice, api(served, BOB) as bob:
        sid = alice.post("/v1/sandboxes", json={}).json()["id"]
        assert alice.put(f"/v1/sandboxes/{sid}/files/app.py", content=APP.encode()).status_code == 201
        process = start(alice, sid, command="python app.py")
        assert process["status"] == "running", json.dumps(process)[:3000]
        assert {p["name"] for p in process["install"]["installed"]} >= {"fastapi", "uvicorn"}
        pid = process["process_id"]

        root = wait_for_port(alice, sid, 8000)
        assert root.status_code == 200, root.text
        assert root.json() == {"hello": "from the sandbox"}
        item = alice.get(f"/v1/sandboxes/{sid}/ports/8000/items/5", params={"q": "a b/c"}).json()
        assert item == {"item": 5, "q": "a b/c", "prefix": f"/v1/sandboxes/{sid}/ports/8000", "authorization": None}
        echoed = alice.post(f"/v1/sandboxes/{sid}/ports/8000/echo", content=b"x" * 100_000).json()
        assert echoed == {"body": "x" * 100_000}

        url = f"ws://127.0.0.1:{served.port}/v1/sandboxes/{sid}/ports/8000/ws"
        with ws_connect(url, additional_headers={"Authorization": f"Bearer {ALICE}"}) as socket:
            socket.send("hi")
            assert socket.recv(timeout=30) == "echo: hi"

        # Another tenant learns nothing: the same 404 as for a sandbox that does not exist.
        for answer in (
            bob.get(f"/v1/sandboxes/{sid}/ports/8000/"),
            bob.post(f"/v1/sandboxes/{sid}/ports/8000/echo", content=b"x"),
            bob.get(f"/v1/sandboxes/{sid}/processes"),
            bob.get(f"/v1/sandboxes/{sid}/processes/{pid}/logs"),
            bob.delete(f"/v1/sandboxes/{sid}/processes/{pid}"),
        ):
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "sandbox_not_found"
        with pytest.raises(Exception, match="404"):
            ws_connect(url, additional_headers={"Authorization": f"Bearer {BOB}"})

        listed = alice.get(f"/v1/sandboxes/{sid}/processes").json()["processes"]
        assert [(p["process_id"], p["status"], p["ports"]) for p in listed] == [(pid, "running", [8000])]
        logs = alice.get(f"/v1/sandboxes/{sid}/processes/{pid}/logs").json()
        assert "starting" in logs["output"] and "Uvicorn running" in logs["output"]
        assert (
            alice.get(f"/v1/sandboxes/{sid}/processes/{pid}/logs", params={"since": logs["end"]}).json()["chunks"] == []
            or logs["end"] > 0
        )

        # Stopping frees everything: no process of the sandbox's uid, no cgroup, no socket folder. (First the
        # environment's bytecode companion, built in the background by the builder uid, is let finish.)
        builder = int(served.env["CLOCHE_BUILDER_UID"])
        deadline = time.monotonic() + 120
        while pool_processes(builder, builder + 1) and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped = alice.delete(f"/v1/sandboxes/{sid}/processes/{pid}")
        assert stopped.status_code == 200 and stopped.json()["status"] == "killed"
        low, high = served.uid_range
        assert pool_processes(low, high) == []
        assert leftover_cgroups(served) == []
        assert socket_folders(served) == []
        gone = alice.get(f"/v1/sandboxes/{sid}/ports/8000/")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "port_not_listening"
        assert alice.get(f"/v1/sandboxes/{sid}/processes/{pid}").json()["error"]["code"] == "process_not_found"


def test_the_lifetime_cap_ends_a_process_and_its_log_streams_to_the_end(served: ServerProcess) -> None:
    with api(served, ALICE) as alice:
        sid = alice.post("/v1/sandboxes", json={}).json()["id"]
        command = "for i in 1 2 3; do echo tick $i; sleep 0.3; done; echo oops >&2; sleep 60"
        process = start(alice, sid, command=command, timeout_seconds=3)
        assert process["lifetime_seconds"] == 3
        events = sse_events(alice, "GET", f"/v1/sandboxes/{sid}/processes/{process['process_id']}/logs")
        out = "".join(data["data"] for kind, data in events if kind == "stdout")
        assert out == "tick 1\ntick 2\ntick 3\n"
        assert ("stderr", {"data": "oops\n", "offset": len(out)}) in events
        assert events[-1][0] == "done" and events[-1][1]["status"] == "timed_out"
        assert socket_folders(served) == []
        listed = alice.get(f"/v1/sandboxes/{sid}/processes").json()["processes"]
        assert [p["status"] for p in listed] == ["timed_out"]  # listed, with its log, until stopped
        assert alice.delete(f"/v1/sandboxes/{sid}/processes/{process['process_id']}").json()["status"] == "timed_out"
        assert alice.get(f"/v1/sandboxes/{sid}/processes").json()["processes"] == []
        records = [r for r in export(served.data_dir, sid) if r["event"].startswith("process_")]
        assert [(r["event"], r.get("status")) for r in records] == [
            ("process_started", None),
            ("process_ended", "timed_out"),
        ]
        assert records[0]["command"] == command and records[0]["process_id"] == process["process_id"]


def test_deleting_the_sandbox_ends_its_processes(served: ServerProcess) -> None:
    with api(served, ALICE) as alice:
        sid = alice.post("/v1/sandboxes", json={}).json()["id"]
        for _ in range(2):
            start(alice, sid, command="sleep 1000")
        low, high = served.uid_range
        assert pool_processes(low, high)
        assert alice.delete(f"/v1/sandboxes/{sid}").status_code == 204
        assert pool_processes(low, high) == []
        assert leftover_cgroups(served) == []
        assert socket_folders(served) == []


def test_an_idle_sandbox_expires_with_its_processes(served: ServerProcess) -> None:
    with api(served, ALICE) as alice:
        sid = alice.post("/v1/sandboxes", json={"ttl_seconds": 2}).json()["id"]
        start(alice, sid, command="sleep 600")
        deadline = time.monotonic() + 60
        while (answer := alice.get(f"/v1/sandboxes/{sid}")).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert answer.json()["error"]["code"] == "sandbox_expired"
        low, high = served.uid_range
        deadline = time.monotonic() + 15  # the tombstone comes first, the clean-up right after
        while (pool_processes(low, high) or socket_folders(served)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool_processes(low, high) == []
        assert leftover_cgroups(served) == []
        assert socket_folders(served) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"command": "sleep 1", "background": True, "stdin": "x"}, 422, "validation_error"),
        ({"command": "sleep 1", "background": "maybe"}, 422, "validation_error"),
        ({"filename": "missing.py", "background": True}, 404, "file_not_found"),
    ],
)
def test_bad_starts_are_refused_clearly(served: ServerProcess, body: dict[str, Any], status: int, code: str) -> None:
    with api(served, ALICE) as alice:
        sid = alice.post("/v1/sandboxes", json={}).json()["id"]
        answer = alice.post(f"/v1/sandboxes/{sid}/exec", json=body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
        for path, wanted in [
            ("processes/rs_000000000000000000000000", (404, "process_not_found")),
            ("processes/rs_000000000000000000000000/logs", (404, "process_not_found")),
            ("processes/rs_0/logs?since=-1", (422, "validation_error")),
            ("ports/0/", (422, "validation_error")),
            ("ports/65536/", (422, "validation_error")),
            ("ports/http/", (422, "validation_error")),
            ("ports/8000/", (404, "port_not_listening")),
        ]:
            got = alice.get(f"/v1/sandboxes/{sid}/{path}")
            assert (got.status_code, got.json()["error"]["code"]) == wanted, (path, got.text)


def test_stopping_the_server_ends_its_background_processes(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    low, high = fresh_server.uid_range
    with httpx.Client(base_url=fresh_server.url, timeout=60) as api:
        sid = api.post("/v1/sandboxes", json={}).json()["id"]
        start(api, sid, command="sleep 600")
        assert pool_processes(low, high)
    fresh_server.stop()  # SIGTERM: the server's own shutdown, not the next start's reconcile
    assert pool_processes(low, high) == []
    assert socket_folders(fresh_server) == []
    parent = cgroup_parent(fresh_server.data_dir.resolve())
    assert parent not in {p.name for p in server_cgroup_parents()}
