"""Runs that end early: deleted mid-exec, abandoned by their client, or cut by a server crash.

Each answers (or records) a ``killed`` run, ends it at once, and keeps the output captured so far.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import ServerProcess
from tests_support import pool_processes_of, sse_events

LONG = "echo started; sleep 120; echo never"


def new_sandbox(http: httpx.Client) -> str:
    sid: str = http.post("/v1/sandboxes", json={}).json()["id"]
    return sid


def wait_for(check: Callable[[], Any], seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up after {seconds}s")


def stored_run(http: httpx.Client, sid: str) -> dict[str, Any] | None:
    """The sandbox's latest run as stored, once its output so far shows 'started'."""
    runs = http.get(f"/v1/sandboxes/{sid}/runs").json().get("runs") or []
    if not runs:
        return None
    record: dict[str, Any] = http.get(f"/v1/sandboxes/{sid}/runs/{runs[0]['run_id']}").json()
    return record if "started" in record["output"] else None


def test_delete_during_a_json_exec_answers_killed_with_the_output_so_far(
    http: httpx.Client, server: ServerProcess
) -> None:
    sid = new_sandbox(http)
    answer: dict[str, httpx.Response] = {}
    caller = threading.Thread(
        target=lambda: answer.setdefault("r", http.post(f"/v1/sandboxes/{sid}/exec", json={"command": LONG}))
    )
    caller.start()
    wait_for(lambda: stored_run(http, sid))  # running, and its first line is already kept
    started = time.monotonic()
    assert http.delete(f"/v1/sandboxes/{sid}").status_code == 204
    caller.join(30)
    response = answer["r"]
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["status"], result["exit_code"]) == ("killed", None)
    assert result["output"] == "started\n" and result["stdout"] == "started\n"
    assert "deleted" in result["error"]
    assert time.monotonic() - started < 10
    wait_for(lambda: not pool_processes_of(server), 10)


def test_delete_during_an_sse_exec_ends_with_a_killed_event(http: httpx.Client) -> None:
    sid = new_sandbox(http)

    def delete_once_it_prints(kind: str, _: Any) -> None:
        if kind == "stdout":
            with httpx.Client(base_url=str(http.base_url)) as other:
                assert other.delete(f"/v1/sandboxes/{sid}").status_code == 204

    events = sse_events(http, "POST", f"/v1/sandboxes/{sid}/exec", delete_once_it_prints, json={"command": LONG})
    assert [k for k, _ in events] == ["stdout", "done"], events
    done = events[-1][1]
    assert (done["status"], done["exit_code"], done["output"]) == ("killed", None, "started\n")


def test_a_plain_exec_whose_client_leaves_is_killed_and_keeps_its_output(
    http: httpx.Client, server: ServerProcess
) -> None:
    sid = new_sandbox(http)
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server.url, timeout=3) as impatient:
        impatient.post(f"/v1/sandboxes/{sid}/exec", json={"command": LONG})
    left = time.monotonic()
    record = wait_for(lambda: (r := stored_run(http, sid)) and r["status"] != "running" and r)
    assert time.monotonic() - left < 10  # killed when the client left, not at the 120 s sleep's end
    assert (record["status"], record["exit_code"], record["output"]) == ("killed", None, "started\n")
    assert "disconnected" in record["error"]
    wait_for(lambda: not pool_processes_of(server), 10)
    http.delete(f"/v1/sandboxes/{sid}")


def test_a_run_cut_by_a_crash_keeps_its_output(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    with httpx.Client(base_url=fresh_server.url, timeout=60) as http:
        sid = new_sandbox(http)

        def call() -> None:
            with pytest.raises(httpx.TransportError):
                http.post(f"/v1/sandboxes/{sid}/exec", json={"command": LONG})

        caller = threading.Thread(target=call)
        caller.start()
        wait_for(lambda: stored_run(http, sid))  # the output so far reached the run row while it ran
        fresh_server.crash()
        caller.join(30)
    fresh_server.start()
    with httpx.Client(base_url=fresh_server.url, timeout=60) as http:
        record = stored_run(http, sid)
        assert record is not None
        assert (record["status"], record["output"], record["stdout"]) == ("failed", "started\n", "started\n")
        assert "server stopped" in record["error"]
