"""Code contexts over HTTP against a real server: a persistent IPython kernel in the sandbox's jail.

The kernel tools (ipykernel) and the packages cells import come from the real PyPI, hence ``network``.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerProcess, pool_processes
from tests_support import assert_clean, leftover_cgroups, pool_processes_of, sse_events

pytestmark = pytest.mark.network


@pytest.fixture
def sandbox(http: httpx.Client) -> Iterator[str]:
    sid: str = http.post("/v1/sandboxes", json={}).json()["id"]
    yield sid
    http.delete(f"/v1/sandboxes/{sid}")


def cell(http: httpx.Client, sid: str, code: str, **body: Any) -> dict[str, Any]:
    response = http.post(f"/v1/sandboxes/{sid}/code", json={"code": code, **body}, timeout=600)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def main_text(result: dict[str, Any]) -> str | None:
    found = [r["text"] for r in result["results"] if r["is_main_result"]]
    return found[0] if found else None


def test_variables_persist_errors_report_and_a_timeout_keeps_state(http: httpx.Client, sandbox: str) -> None:
    first = cell(http, sandbox, "x = 41")
    assert first["status"] == "ok" and first["results"] == [] and first["restarted"] is False, first
    assert cell(http, sandbox, "x += 1")["status"] == "ok"
    third = cell(http, sandbox, "x")
    assert main_text(third) == "42" and third["execution_count"] == 3, third
    assert third["context_id"] == first["context_id"]

    failed = cell(http, sandbox, "print('before'); 1/0")
    assert failed["status"] == "error" and failed["stdout"] == "before\n"
    assert failed["error"]["name"] == "ZeroDivisionError" and failed["error"]["value"] == "division by zero"
    assert (
        "----> 1 print('before'); 1/0" in failed["error"]["traceback"] and "\x1b[" not in failed["error"]["traceback"]
    )

    started = time.monotonic()
    slow = cell(http, sandbox, "import time\nprint('going', flush=True)\ntime.sleep(60)", timeout_seconds=2)
    assert time.monotonic() - started < 30
    assert slow["status"] == "timed_out" and slow["error"]["name"] == "KeyboardInterrupt", slow
    assert slow["stdout"] == "going\n"
    after = cell(http, sandbox, "x")
    assert main_text(after) == "42" and after["restarted"] is False, after

    listed = http.get(f"/v1/sandboxes/{sandbox}/contexts").json()["contexts"]
    assert [(c["id"], c["default"], c["status"]) for c in listed] == [(first["context_id"], True, "idle")]


@pytest.mark.timeout(1500)  # pandas and matplotlib from PyPI, built and checked on a busy host
def test_imports_install_into_the_running_kernel_and_results_are_rich(http: httpx.Client, sandbox: str) -> None:
    assert cell(http, sandbox, "x = 41")["status"] == "ok"
    # A first import of a package just added runs from its sources (its bytecode is built for later kernels):
    # on a busy host that takes more than the default 30 s.
    frame = cell(http, sandbox, "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})", timeout_seconds=600)
    assert frame["status"] == "ok", frame
    assert "pandas" in {p["name"] for p in frame["install"]["installed"]}, frame["install"]
    assert frame["restarted"] is False  # the new environment joined the running kernel
    (table,) = frame["results"]
    assert table["is_main_result"] and "<table" in table["html"] and "a  b" in table["text"]
    assert main_text(cell(http, sandbox, "x + 1")) == "42"  # state kept across the install

    plot = cell(
        http,
        sandbox,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.show()",
        timeout_seconds=600,
    )
    assert plot["status"] == "ok", plot
    images = [r["png"] for r in plot["results"] if r["png"]]
    assert len(images) == 1, plot["results"]
    png = base64.b64decode(images[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 100 and height > 100
    again = cell(http, sandbox, "import pandas\npandas.__name__")
    assert again["install"]["installed"] == [] and main_text(again) == "'pandas'"


def test_contexts_are_separate_restartable_and_deletable(http: httpx.Client, sandbox: str) -> None:
    base = f"/v1/sandboxes/{sandbox}/contexts"
    one, two = (http.post(base, json={}) for _ in range(2))
    assert one.status_code == two.status_code == 201, one.text
    a, b = one.json()["id"], two.json()["id"]
    assert one.json()["status"] in ("starting", "idle") and one.json()["default"] is False
    cell(http, sandbox, "y = 'a'", context_id=a)
    cell(http, sandbox, "y = 'b'", context_id=b)
    assert main_text(cell(http, sandbox, "y", context_id=a)) == "'a'"
    assert main_text(cell(http, sandbox, "y", context_id=b)) == "'b'"

    restarted = http.post(f"{base}/{a}/restart")
    assert restarted.status_code == 200 and restarted.json()["execution_count"] == 0
    gone = cell(http, sandbox, "y", context_id=a)
    assert gone["status"] == "error" and gone["error"]["name"] == "NameError"

    assert http.delete(f"{base}/{b}").status_code == 204
    missing = http.post(f"/v1/sandboxes/{sandbox}/code", json={"code": "y", "context_id": b})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "context_not_found"
    assert http.get(f"{base}/{b}").status_code == 404
    assert [c["id"] for c in http.get(base).json()["contexts"]] == [a]


def test_bad_requests_are_clear_4xx(http: httpx.Client, sandbox: str) -> None:
    code = f"/v1/sandboxes/{sandbox}/code"
    for body, where in (
        ({"code": "   "}, "empty"),
        ({"code": "1", "context_id": "nope"}, "context_id"),
        ({"code": "1", "timeout_seconds": -1}, "timeout"),
        ({"code": "1", "what": 1}, "what"),
    ):
        answer = http.post(code, json=body)
        assert answer.status_code == 422 and where in answer.json()["error"]["message"], answer.text
    unknown = http.post(code, json={"code": "1", "context_id": "ctx_" + "0" * 24})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "context_not_found"
    assert http.post("/v1/sandboxes/sb_000000000000000000000000/code", json={"code": "1"}).status_code == 404


def test_a_crashed_kernel_is_reported_and_the_next_cell_restarts_it(http: httpx.Client, sandbox: str) -> None:
    cell(http, sandbox, "x = 1")
    crashed = cell(http, sandbox, "import os\nos._exit(3)")
    assert crashed["status"] == "crashed" and crashed["error"]["name"] == "KernelDied", crashed
    assert "code 3" in crashed["error"]["value"]
    listed = http.get(f"/v1/sandboxes/{sandbox}/contexts").json()["contexts"]
    assert [c["status"] for c in listed] == ["dead"]
    after = cell(http, sandbox, "x")
    assert after["restarted"] is True and "code 3" in after["restart_reason"], after
    assert after["status"] == "error" and after["error"]["name"] == "NameError"


def test_output_streams_as_server_sent_events(http: httpx.Client, sandbox: str) -> None:
    body = {"code": "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)\n'end'"}
    events = sse_events(http, "POST", f"/v1/sandboxes/{sandbox}/code", json=body)
    kinds = [kind for kind, _ in events]
    assert kinds.count("stdout") >= 3 and kinds[-1] == "done", kinds
    assert kinds.index("result") < kinds.index("done")
    assert "".join(d["data"] for k, d in events if k == "stdout") == "0\n1\n2\n"
    assert events[-1][1]["results"][0]["text"] == "'end'"


def kernel_uids(server: ServerProcess) -> set[int]:
    """Host uids of the pool whose processes include a kernel."""
    uids = set()
    for pid in pool_processes_of(server):
        with contextlib.suppress(OSError):
            if b"kernel_jail" in Path(f"/proc/{pid}/cmdline").read_bytes():
                uids.add(Path(f"/proc/{pid}").stat().st_uid)
    return uids


def test_deleting_the_sandbox_ends_its_kernels(server: ServerProcess, http: httpx.Client) -> None:
    before = kernel_uids(server)
    sid = http.post("/v1/sandboxes", json={}).json()["id"]
    cell(http, sid, "import os\npid = os.getpid()")
    http.post(f"/v1/sandboxes/{sid}/contexts", json={})
    (uid,) = kernel_uids(server) - before
    assert http.delete(f"/v1/sandboxes/{sid}").status_code == 204
    assert processes(uid) == []  # stopped before the delete answered
    assert [p.name for p in (server.data_dir / "run").iterdir() if p.name.startswith("kernel-")] == []
    # Install jails (bytecode companions of earlier tests) may still be at work: wait for them to end.
    deadline = time.monotonic() + 300
    while (pool_processes_of(server) or leftover_cgroups(server)) and time.monotonic() < deadline:
        time.sleep(0.5)
    other = http.post("/v1/sandboxes", json={}).json()["id"]
    assert_clean(server, http, other)
    http.delete(f"/v1/sandboxes/{other}")


def processes(uid: int) -> list[int]:
    return pool_processes(uid, uid + 1)
