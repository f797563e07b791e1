"""Tenancy over real HTTP: every route refuses another tenant's key, and no key material is ever written down.

The route table comes from the server's own OpenAPI document, so a route added later is called here too; a route
this file does not know how to call fails the test until it is taught (a body example or a documented answer).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from conftest import ServerProcess, tenant_http
from tests_support import zip_of

# Bare keys sharing a long prefix: their tenants must still differ. Letters outside hex and words no log line
# holds, so any 6-character piece found written down is key material.
ALICE = "qzkvwxptrsmn-alice-wqrtyz"
BOB = "qzkvwxptrsmn-bob-ymnzpq"
NAMED = "team-x:named-kqzwvy-xwvqzk"
API_KEYS = (ALICE, BOB, NAMED)  # keyed_server's (conftest)

# A minimal valid body per request schema, so a refusal is the tenant check and not validation.
JSON_BODIES: dict[str, Any] = {
    "CreateSandbox": {},
    "SeedCreate": {},
    "ExecRequest": {"command": "echo hi"},
    "SeedExec": {"command": "echo hi"},
    "CreateSecret": {"name": "BOB_TOKEN", "value": "bob's own value"},
    "CreateContext": {},
    "CodeRequest": {"code": "1"},
}
# Routes that take no sandbox: what another tenant's key gets from them.
OPEN_ROUTES: dict[tuple[str, str], int] = {
    ("GET", "/v1/sandboxes"): 200,
    ("POST", "/v1/sandboxes"): 201,
    ("POST", "/jhansi/v1/sandboxes"): 201,
    ("GET", "/jhansi/health"): 200,
    ("GET", "/health"): 200,
    ("GET", "/metrics"): 200,
    ("POST", "/v1/secrets"): 201,  # bob's own
    ("GET", "/v1/secrets"): 200,  # bob's own: alice's are not listed
    ("DELETE", "/v1/secrets/{name}"): 404,  # alice's name: not bob's
}


def api(server: ServerProcess, key: str) -> httpx.Client:
    return tenant_http(server, key, timeout=60)


def _request_options(operation: dict[str, Any]) -> dict[str, Any]:
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        return {"files": {"file": ("b.zip", zip_of({"b.txt": "from an archive\n"}))}}
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        refs = re.findall(r"#/components/schemas/(\w+)", str(schema))
        assert refs and refs[0] in JSON_BODIES, f"add an example body for {refs} to JSON_BODIES"
        return {"json": JSON_BODIES[refs[0]]}
    return {"content": b"overwritten by another tenant\n"}  # raw bodies (PUT file)


def _operations(server: ServerProcess) -> list[tuple[str, str, dict[str, Any]]]:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    return [(method.upper(), path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_every_route_refuses_another_tenants_key(keyed_server: ServerProcess) -> None:
    with api(keyed_server, ALICE) as alice, api(keyed_server, BOB) as bob:
        sid = alice.post("/v1/sandboxes", json={}).json()["id"]
        assert alice.post("/v1/secrets", json={"name": "ALICE_TOKEN", "value": "alice's value"}).status_code == 201
        assert alice.put(f"/v1/sandboxes/{sid}/files/a.txt", content=b"alice's\n").status_code == 201
        run = alice.post(f"/v1/sandboxes/{sid}/exec", json={"command": "cat a.txt"}).json()
        assert run["stdout"] == "alice's\n"
        values = {"sandbox_id": sid, "run_id": run["run_id"], "path": "a.txt", "from": run["run_id"]}
        values["to"] = run["run_id"]
        values["name"] = "ALICE_TOKEN"
        # A live background server, so the process and ports routes have something real to refuse bob.
        serving = {"command": "python3 -m http.server 8000", "background": True}
        values["process_id"] = alice.post(f"/v1/sandboxes/{sid}/exec", json=serving).json()["process_id"]
        values["port"] = "8000"
        values["context_id"] = "ctx_" + "0" * 24  # a context of alice's sandbox or not: the sandbox answers first

        operations = _operations(keyed_server)
        assert len(operations) >= 20
        for method, path, operation in operations:
            url = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], path)
            query = [p for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")]
            params = {p["name"]: values[p["name"]] for p in query}
            answer = bob.request(method, url, params=params, **_request_options(operation))
            if "{sandbox_id}" in path:
                assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
            else:
                assert (method, path) in OPEN_ROUTES, f"{method} {path}: add its answer to OPEN_ROUTES"
                assert answer.status_code == OPEN_ROUTES[method, path], (method, path, answer.text)
                assert sid not in answer.text

        # Nothing bob sent reached alice's sandbox.
        assert alice.get(f"/v1/sandboxes/{sid}").status_code == 200
        assert alice.get(f"/v1/sandboxes/{sid}/files/a.txt").content == b"alice's\n"
        assert [r["run_id"] for r in alice.get(f"/v1/sandboxes/{sid}/runs").json()["runs"]] == [run["run_id"]]
        assert "b.txt" not in str(alice.get(f"/v1/sandboxes/{sid}/files").json())
        assert [s["name"] for s in alice.get("/v1/secrets").json()["secrets"]] == ["ALICE_TOKEN"]
        assert [s["name"] for s in bob.get("/v1/secrets").json()["secrets"]] == ["BOB_TOKEN"]
        assert alice.get(f"/v1/sandboxes/{sid}/processes/{values['process_id']}").json()["status"] == "running"


def test_bare_keys_with_a_shared_prefix_are_different_tenants(keyed_server: ServerProcess) -> None:
    with api(keyed_server, ALICE) as alice, api(keyed_server, BOB) as bob:
        sid = alice.post("/v1/sandboxes", json={}).json()["id"]
        assert sid not in str(bob.get("/v1/sandboxes").json())
        assert bob.delete(f"/v1/sandboxes/{sid}").status_code == 404
        assert alice.delete(f"/v1/sandboxes/{sid}").status_code == 204


def test_no_key_material_in_logs_audit_or_database(keyed_server: ServerProcess) -> None:
    with api(keyed_server, ALICE) as alice, api(keyed_server, "qzkvwxptrsmn-mallory") as mallory:
        sid = alice.post("/v1/sandboxes", json={}).json()["id"]
        alice.post(f"/v1/sandboxes/{sid}/exec", json={"command": "true"})
        alice.delete(f"/v1/sandboxes/{sid}")
        assert mallory.get("/v1/sandboxes").status_code == 401
    written = keyed_server.log.read_bytes()
    for path in Path(keyed_server.data_dir).rglob("*"):
        if path.is_file() and (path.name.startswith(("audit", "cloche.db"))):
            written += path.read_bytes()
    assert b"sandbox_created" in written  # the audit log was read
    for key in (ALICE, BOB, NAMED.partition(":")[2], "qzkvwxptrsmn-mallory"):
        pieces = {key[i : i + 6] for i in range(len(key) - 5)}
        assert not [p for p in pieces if p.encode() in written], f"pieces of {key!r} were written down"
