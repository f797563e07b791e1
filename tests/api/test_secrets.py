"""Secrets over real HTTP: stored sealed, never read back, given only to the runs that ask, masked everywhere."""

from __future__ import annotations

import base64
import json
import secrets
import stat
from urllib.parse import quote

import pytest

from conftest import ServerProcess, tenant_http
from tests_support import sse_exec

ALICE, BOB = "alice:alice-key-secrets-test", "bob:bob-key-secrets-test"
API_KEYS = (ALICE, BOB)  # keyed_server's (conftest)
VALUE = "sk-test/" + secrets.token_hex(12) + "+=&?"
FORMS = [VALUE, base64.b64encode(VALUE.encode()).decode(), quote(VALUE, safe="")]
# Prints the value plain, base64 and URL-encoded, and once more cut in two writes a moment apart.
PRINTS = (
    "import base64, os, sys, time, urllib.parse; v = os.environ['OPENAI_API_KEY']; "
    "print(v); print(base64.b64encode(v.encode()).decode()); print(urllib.parse.quote(v, safe=''), flush=True); "
    "sys.stdout.write(v[:10]); sys.stdout.flush(); time.sleep(0.3); print(v[10:]); "
    "print('err', v, file=sys.stderr)"
)


def assert_masked(text: str) -> None:
    for form in FORMS:
        assert form not in text
    assert VALUE[:10] not in text and VALUE[10:] not in text


def test_a_secret_is_given_to_the_runs_that_ask_and_masked_everywhere(keyed_server: ServerProcess) -> None:
    with tenant_http(keyed_server, ALICE) as alice:
        made = alice.post("/v1/secrets", json={"name": "OPENAI_API_KEY", "value": VALUE, "hosts": ["api.openai.com"]})
        assert made.status_code == 201, made.text
        listed = alice.get("/v1/secrets")
        assert [(s["name"], s["hosts"]) for s in listed.json()["secrets"]] == [("OPENAI_API_KEY", ["api.openai.com"])]
        assert_masked(listed.text + made.text)

        sid = alice.post("/v1/sandboxes", json={"language": "python", "secrets": ["OPENAI_API_KEY"]}).json()["id"]
        assert alice.get(f"/v1/sandboxes/{sid}").json()["secrets"] == ["OPENAI_API_KEY"]
        assert alice.put(f"/v1/sandboxes/{sid}/files/p.py", content=PRINTS.encode()).status_code == 201
        answer = alice.post(f"/v1/sandboxes/{sid}/exec", json={"command": "python3 p.py"})
        result = answer.json()
        assert result["status"] == "succeeded", result
        assert result["stdout"] == "***\n***\n***\n***\n" and result["stderr"] == "err ***\n", result
        assert_masked(answer.text)
        stored = alice.get(f"/v1/sandboxes/{sid}/runs/{result['run_id']}")
        assert stored.json()["stdout"] == result["stdout"]
        assert_masked(stored.text)

        events = sse_exec(alice, sid, {"command": "python3 p.py"})
        streamed = "".join(str(data["data"]) for kind, data in events if kind == "stdout" and isinstance(data, dict))
        assert streamed == "***\n***\n***\n***\n" and events[-1][0] == "done"
        assert_masked(json.dumps(events))

        # A sandbox without secrets: its runs get none, unless an exec asks.
        plain = alice.post("/v1/sandboxes", json={"language": "python"}).json()["id"]
        show = "python3 -c \"import os; print(os.environ.get('OPENAI_API_KEY', 'none'))\""
        assert alice.post(f"/v1/sandboxes/{plain}/exec", json={"command": show}).json()["stdout"] == "none\n"
        asked = alice.post(f"/v1/sandboxes/{plain}/exec", json={"command": show, "secrets": ["OPENAI_API_KEY"]})
        assert asked.json()["stdout"] == "***\n", asked.text

    written = keyed_server.log.read_bytes()
    for path in keyed_server.data_dir.iterdir():
        if path.is_file() and path.name.startswith(("audit", "cloche.db")):
            written += path.read_bytes()
    assert b"run_finished" in written and b"OPENAI_API_KEY" in written  # the audit log and database were read
    for form in FORMS:
        assert form.encode() not in written
    key_file = keyed_server.data_dir / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32


def test_another_tenant_can_neither_list_nor_use_a_secret(keyed_server: ServerProcess) -> None:
    with tenant_http(keyed_server, ALICE) as alice, tenant_http(keyed_server, BOB) as bob:
        assert alice.post("/v1/secrets", json={"name": "ALICE_ONLY", "value": "alice-only-value"}).status_code == 201
        assert "ALICE_ONLY" not in bob.get("/v1/secrets").text
        refused = bob.post("/v1/sandboxes", json={"secrets": ["ALICE_ONLY"]})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "secret_not_found", refused.text
        sid = bob.post("/v1/sandboxes", json={}).json()["id"]
        used = bob.post(f"/v1/sandboxes/{sid}/exec", json={"command": "env", "secrets": ["ALICE_ONLY"]})
        assert used.status_code == 404 and "ALICE_ONLY" in used.json()["error"]["message"]
        assert bob.delete("/v1/secrets/ALICE_ONLY").status_code == 404
        assert alice.delete("/v1/secrets/ALICE_ONLY").status_code == 204
        assert alice.delete("/v1/secrets/ALICE_ONLY").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "1BAD", "value": "long enough value"},
        {"name": "OK_NAME", "value": "short"},
        {"name": "OK_NAME", "value": "long enough value", "hosts": ["10.0.0.1"]},
        {"name": "OK_NAME"},
    ],
)
def test_bad_secrets_are_a_clear_422(keyed_server: ServerProcess, body: dict[str, object]) -> None:
    with tenant_http(keyed_server, ALICE) as alice:
        answer = alice.post("/v1/secrets", json=body)
        assert answer.status_code == 422 and answer.json()["error"]["message"], answer.text
