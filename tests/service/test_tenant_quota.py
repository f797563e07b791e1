"""One tenant cannot take the whole uid pool: past its quota a create is a 429, other tenants unaffected."""

from __future__ import annotations

import httpx

from conftest import running_server


def test_a_tenant_past_its_sandbox_quota_gets_429_and_others_still_create() -> None:
    env = {"CLOCHE_API_KEYS": "alice:key-a,bob:key-b", "CLOCHE_MAX_SANDBOXES_PER_TENANT": "2"}
    with running_server(env) as srv:
        alice = httpx.Client(base_url=srv.url, headers={"Authorization": "Bearer key-a"}, timeout=60)
        bob = httpx.Client(base_url=srv.url, headers={"Authorization": "Bearer key-b"}, timeout=60)
        made = [alice.post("/v1/sandboxes", json={}) for _ in range(2)]
        assert [r.status_code for r in made] == [201, 201]
        refused = alice.post("/v1/sandboxes", json={})
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "tenant_quota_exceeded" and "CLOCHE_MAX_SANDBOXES_PER_TENANT" in error["message"]
        assert len(alice.get("/v1/sandboxes").json()["sandboxes"]) == 2  # nothing stored for the refused create
        assert bob.post("/v1/sandboxes", json={}).status_code == 201
        # Deleting one frees a place in the tenant's quota.
        assert alice.delete(f"/v1/sandboxes/{made[0].json()['id']}").status_code == 204
        assert alice.post("/v1/sandboxes", json={}).status_code == 201
