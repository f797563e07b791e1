"""Two node agents and two API servers on one PostgreSQL: sandboxes live on agents, not on API servers.

Each agent is a real ``cloche serve --agent`` process (own data dir, own uid range, own audit chain); each API server a
real ``cloche serve`` with ``CLOCHE_AGENTS`` naming both. Killing one agent fails only its sandboxes, with
``agent_unavailable``; restarting it brings them back with their files.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from conftest import ServerProcess, traversable_dir

TOKEN = "agent-token-for-tests"


@dataclass
class Fleet:
    agents: dict[str, ServerProcess]
    apis: list[ServerProcess]
    url: str


def start_all(servers: list[ServerProcess]) -> None:
    """Start several servers at once (each start waits for its own health)."""
    failures: list[BaseException] = []

    def start(srv: ServerProcess) -> None:
        try:
            srv.start(timeout=300)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(srv,)) for srv in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


@pytest.fixture(scope="module")
def fleet(pg_cluster: object) -> Iterator[Fleet]:
    from pg_cluster import PostgresCluster

    assert isinstance(pg_cluster, PostgresCluster)
    url = pg_cluster.new_database()
    shared = {
        "CLOCHE_DATABASE_URL": url,
        "CLOCHE_SECRETS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "CLOCHE_AGENT_TOKEN": TOKEN,
    }
    roots = [traversable_dir() for _ in range(4)]
    agents = {
        name: ServerProcess(root / "data", {**shared, "CLOCHE_NODE_NAME": name}, options=("--agent",))
        for name, root in zip(("a1", "a2"), roots, strict=False)
    }
    listing = ",".join(f"{name}={srv.url}" for name, srv in agents.items())
    apis = [ServerProcess(root / "data", {**shared, "CLOCHE_AGENTS": listing}) for root in roots[2:]]
    try:
        start_all([*agents.values(), *apis])
        yield Fleet(agents, apis, url)
    finally:
        for srv in [*apis, *agents.values()]:
            srv.stop()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def placement(url: str, sandbox_id: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT placement FROM sandboxes WHERE id = %s", (sandbox_id,)).fetchone()
    assert row is not None
    return str(row[0])


def exec_(api: ServerProcess, sandbox_id: str, **body: object) -> httpx.Response:
    return httpx.post(f"{api.url}/v1/sandboxes/{sandbox_id}/exec", json=body, timeout=120)


def test_an_agent_answers_only_with_the_token_and_says_who_it_is(fleet: Fleet) -> None:
    agent = fleet.agents["a2"]
    assert httpx.get(f"{agent.url}/agent/v1/info").status_code == 401
    wrong = httpx.get(f"{agent.url}/agent/v1/info", headers={"authorization": "Bearer nope"})
    assert wrong.json()["error"]["code"] == "unauthorized"
    info = httpx.get(f"{agent.url}/agent/v1/info", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert (info["name"], info["protocol"]) == ("a2", 1)
    assert httpx.get(f"{agent.url}/v1/sandboxes").status_code == 404  # an agent serves no public API


def test_a_sandbox_made_through_one_api_server_is_used_through_the_other(fleet: Fleet) -> None:
    first, second = fleet.apis
    with first.client() as one, second.client() as two:
        boxes = [one.create("python") for _ in range(2)]
        assert sorted(placement(fleet.url, b.id) for b in boxes) == ["a1", "a2"]  # one on each node
        for box in boxes:
            box.write("main.py", f"print('on', {box.id!r})\n")
            there = two.sandbox(box.id)
            assert there.exec("main.py").stdout == f"on {box.id}\n"
            assert there.read("main.py") == f"print('on', {box.id!r})\n".encode()
            assert [f.path for f in there.files().files] == ["main.py"]
        streamed = list(two.sandbox(boxes[0].id).stream(command="echo streamed"))
        assert [e.text for e in streamed if e.kind == "stdout"] == ["streamed\n"]
        assert streamed[-1].kind == "done" and streamed[-1].result is not None
        assert {b.id for b in boxes} <= {s.id for s in two.list()}
        runs = one.sandbox(boxes[0].id).runs().runs  # the run rows are in the shared database
        assert len(runs) == 2
        for path, body in (("contexts", {}), ("exec", {"command": "sleep 1", "background": True})):
            refused = httpx.post(f"{second.url}/v1/sandboxes/{boxes[0].id}/{path}", json=body, timeout=60)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported", refused.text
            assert "node agent" in refused.json()["error"]["message"]
        two.sandbox(boxes[1].id).delete()
        missing = httpx.get(f"{first.url}/v1/sandboxes/{boxes[1].id}")
        assert missing.status_code == 404


def test_killing_an_agent_fails_only_its_sandboxes_and_a_restart_brings_them_back(fleet: Fleet) -> None:
    api, other_api = fleet.apis
    with api.client() as client:
        boxes = {placement(fleet.url, b.id): b for b in (client.create("python") for _ in range(2))}
        for node, box in boxes.items():
            box.write("keep.txt", node)
        fleet.agents["a1"].crash()
        down = exec_(other_api, boxes["a1"].id, command="cat keep.txt")
        assert down.status_code == 503
        error = down.json()["error"]
        assert error["code"] == "agent_unavailable" and "'a1'" in error["message"], error
        up = exec_(other_api, boxes["a2"].id, command="cat keep.txt")
        assert (up.status_code, up.json()["stdout"]) == (200, "a2")
        assert httpx.get(f"{api.url}/v1/sandboxes/{boxes['a1'].id}").status_code == 200  # its record is there
        placed = [client.create("python") for _ in range(2)]  # new sandboxes go to the node that answers
        assert {placement(fleet.url, b.id) for b in placed} == {"a2"}
        fleet.agents["a1"].start(timeout=300)
        back = exec_(other_api, boxes["a1"].id, command="cat keep.txt")
        assert (back.status_code, back.json()["stdout"]) == (200, "a1")


def test_each_agent_keeps_one_verifiable_audit_chain_for_its_sandboxes(fleet: Fleet) -> None:
    api = fleet.apis[0]
    with api.client() as client:
        box = client.create("python")
        box.exec(command="true")
    node = placement(fleet.url, box.id)
    data_dir = str(fleet.agents[node].data_dir)
    cli = [sys.executable, "-c", "from cloche.cli.main import main; main()", "audit"]
    verify = subprocess.run([*cli, "verify", "--data-dir", data_dir], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    export = subprocess.run([*cli, "export", box.id, "--data-dir", data_dir], capture_output=True, text=True)
    events = [line.split('"event":"')[1].split('"')[0] for line in export.stdout.splitlines()]
    assert events[0] == "sandbox_created" and "run_finished" in events
