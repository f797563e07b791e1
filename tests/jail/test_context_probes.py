"""The escape, abuse and cross-sandbox probes, run as cells of a code context instead of as execs.

A kernel lives longer than an exec and the server talks to it through sockets in a folder of the jail, so the
probes that hold for execs must hold there too, and a few more: the socket folder and the context's own folder
cannot be changed from inside, another sandbox's kernel cannot be reached, and a kernel that a cell kills with
a resource bomb is reported and replaced. The kernel tools come from the real PyPI, hence ``network``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_escape import PROBE_HEAD, READ_PATHS, SOCKETS, SYSCALLS

from conftest import ServerProcess
from tests_support import assert_clean, leftover_cgroups, pool_processes_of

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=600) as client:
        yield client


@pytest.fixture
def box(api: httpx.Client) -> Iterator[str]:
    sid: str = api.post("/v1/sandboxes", json={"limits": {"pids": 64, "memory_mb": 512}}).json()["id"]
    yield sid
    api.delete(f"/v1/sandboxes/{sid}")


def cell(api: httpx.Client, sid: str, code: str, **body: Any) -> dict[str, Any]:
    answer = api.post(f"/v1/sandboxes/{sid}/code", json={"code": code, **body})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def probe(api: httpx.Client, sid: str, code: str, *args: str) -> dict[str, Any]:
    """Run an escape probe as a cell; it prints one JSON object, which is returned."""
    result = cell(api, sid, f"import sys\nsys.argv = {['probe', *args]!r}\n{PROBE_HEAD}{code}", timeout_seconds=60)
    assert result["status"] == "ok", result
    found: dict[str, Any] = json.loads(result["stdout"].strip().splitlines()[-1])
    return found


def test_privileged_syscalls_and_kernel_sockets_are_refused_in_a_kernel(api: httpx.Client, box: str) -> None:
    syscalls = probe(api, box, SYSCALLS)
    assert {k: v for k, v in syscalls.items() if v == "ok"} == {}
    assert {v for k, v in syscalls.items() if k != "unshare_binary"} == {"EPERM"}, syscalls
    sockets = probe(api, box, SOCKETS)
    assert len(sockets) == 10 and set(sockets.values()) == {"EPERM"}, sockets


KERNEL_FOLDERS = r"""
for folder in ("/run/resident", "/opt/cloche/kernel/context", "/opt/cloche/kernel/tools"):
    for name, make in (("file", lambda p: open(p, "w").close()), ("link", lambda p: os.symlink("/etc", p))):
        try:
            make(folder + "/planted-" + name)
            out[folder + ":" + name] = "ok"
        except OSError as exc:
            out[folder + ":" + name] = err(exc)
    try:
        victim = sorted(n for n in os.listdir(folder) if n.startswith("kernel"))[0]
        os.rename(folder + "/" + victim, folder + "/moved")
        out[folder + ":rename"] = "ok"
    except (OSError, IndexError) as exc:
        out[folder + ":rename"] = err(exc) if isinstance(exc, OSError) else "nothing"
out["sockets"] = sorted(os.listdir("/run/resident"))
print(json.dumps(out))
"""


def test_the_kernels_folders_cannot_be_changed_from_inside(api: httpx.Client, box: str) -> None:
    found = probe(api, box, KERNEL_FOLDERS)
    assert found.pop("sockets") == [f"kernel-{n}" for n in range(1, 6)]
    went_through = {k: v for k, v in found.items() if v == "ok"}
    assert went_through == {}, found
    assert main_text(cell(api, box, "40 + 2")) == "42"  # the kernel is still reachable


def main_text(result: dict[str, Any]) -> str | None:
    return next((r["text"] for r in result["results"] if r["is_main_result"]), None)


def test_another_sandbox_cannot_reach_a_kernel(server: ServerProcess, api: httpx.Client, box: str) -> None:
    secret = cell(api, box, "secret = 'only-in-the-first-kernel'\nimport os\nos.getpid()")
    own = secret["context_id"]
    other = api.post("/v1/sandboxes", json={}).json()["id"]
    try:
        # Its id, used through another sandbox, is not found; the other sandbox's kernel has no such variable.
        borrowed = api.post(f"/v1/sandboxes/{other}/code", json={"code": "secret", "context_id": own})
        assert borrowed.status_code == 404 and borrowed.json()["error"]["code"] == "context_not_found"
        missing = cell(api, other, "secret")
        assert missing["status"] == "error" and missing["error"]["name"] == "NameError"
        assert api.get(f"/v1/sandboxes/{other}/contexts/{own}").status_code == 404
        assert api.delete(f"/v1/sandboxes/{other}/contexts/{own}").status_code == 404
        # Nothing of the server's data, nor the first sandbox's workspace or kernel folder, is visible.
        run = server.data_dir / "run"
        paths = [str(server.data_dir / "cloche.db"), str(server.data_dir / "workspaces" / box), str(run)]
        found = probe(api, other, READ_PATHS, *paths)
        assert not any(v.startswith(("read:", "listed:")) for v in found.values()), found
        assert main_text(cell(api, box, "secret")) == "'only-in-the-first-kernel'"
    finally:
        api.delete(f"/v1/sandboxes/{other}")


FORK_BOMB = """
import os, time
children = []
for _ in range(10000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(3)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print('capped at', len(children))
"""


def test_resource_bombs_in_a_cell_are_contained(server: ServerProcess, api: httpx.Client, box: str) -> None:
    cell(api, box, "kept = 1")
    forked = cell(api, box, FORK_BOMB, timeout_seconds=60)
    assert forked["status"] == "ok" and forked["stdout"].startswith("capped at "), forked
    assert int(forked["stdout"].split()[-1]) < 64  # the sandbox's pids limit holds in its kernel too
    assert main_text(cell(api, box, "kept")) == "1"
    hog = cell(api, box, "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))", timeout_seconds=60)
    assert hog["status"] == "crashed" and "out of memory" in hog["error"]["value"], hog
    after = cell(api, box, "'alive'")
    assert after["restarted"] is True and main_text(after) == "'alive'", after
    api.delete(f"/v1/sandboxes/{box}")
    deadline = time.monotonic() + 300  # install jails of other tests may still be at work
    while (pool_processes_of(server) or leftover_cgroups(server)) and time.monotonic() < deadline:
        time.sleep(0.5)
    fresh = api.post("/v1/sandboxes", json={}).json()["id"]
    assert_clean(server, api, fresh)
    api.delete(f"/v1/sandboxes/{fresh}")
