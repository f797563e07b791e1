"""Sandbox routes over real HTTP: happy paths, bad inputs, error shape."""

from __future__ import annotations

import contextlib
import re
import sqlite3

import httpx
import pytest

from conftest import ServerProcess


def create(http: httpx.Client, **body: object) -> dict[str, object]:
    response = http.post("/v1/sandboxes", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


def test_create_with_curl_style_body_is_json(http: httpx.Client) -> None:
    # curl -d labels the body as a form; the seed's documented call must still work.
    response = http.post(
        "/v1/sandboxes",
        content=b'{"language": "python"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("sb_")
    assert body["language"] == "python"
    assert body["status"] == "ready"
    assert {"created_at", "expires_at"} <= body.keys()


def test_create_without_body_has_no_language(http: httpx.Client) -> None:
    response = http.post("/v1/sandboxes")
    assert response.status_code == 201
    assert response.json()["language"] is None


def test_get_list_delete(http: httpx.Client) -> None:
    sandbox = create(http, language="node", ttl_seconds=3600, env={"GREETING": "hi"})
    sid = sandbox["id"]
    assert sandbox["expires_at"] is not None
    got = http.get(f"/v1/sandboxes/{sid}").json()
    assert got["env_keys"] == ["GREETING"]
    assert sid in [s["id"] for s in http.get("/v1/sandboxes").json()["sandboxes"]]
    assert http.delete(f"/v1/sandboxes/{sid}").status_code == 204
    gone = http.get(f"/v1/sandboxes/{sid}")
    assert gone.status_code == 404
    assert "deleted" in gone.json()["error"]["message"]
    assert http.delete(f"/v1/sandboxes/{sid}").status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"language": "cobol"}, "language"),
        ({"ttl_seconds": -1}, "ttl_seconds"),
        ({"surprise": 1}, "surprise"),
        ({"env": {"1BAD": "x"}}, "env name"),
        ({"limits": {"timeout_seconds": 0}}, "timeout_seconds"),
    ],
)
def test_create_rejects_bad_input(http: httpx.Client, body: dict[str, object], fragment: str) -> None:
    response = http.post("/v1/sandboxes", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert fragment in error["message"]


def test_malformed_json_is_422(http: httpx.Client) -> None:
    response = http.post("/v1/sandboxes", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_unknown_sandbox_is_404_with_code(http: httpx.Client) -> None:
    response = http.get("/v1/sandboxes/sb_000000000000000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "sandbox_not_found"


def test_unknown_route_has_error_shape(http: httpx.Client) -> None:
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_health_and_docs(http: httpx.Client) -> None:
    health = http.get("/health").json()
    assert health["status"] == "ok"
    assert "bubblewrap" in health["jail"]
    assert http.get("/docs").status_code == 200
    assert "/v1/sandboxes/{sandbox_id}/exec" in http.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"ttl_seconds": 1e14}', "ttl_seconds"),
        ('{"ttl_seconds": 1e400}', "ttl_seconds"),
        ('{"ttl_seconds": Infinity}', "ttl_seconds"),
        ('{"ttl_seconds": NaN}', "ttl_seconds"),
        ('{"limits": {"timeout_seconds": 1e300}}', "limits.timeout_seconds"),
        ('{"limits": {"memory_mb": 100000000000000000000000}}', "limits.memory_mb"),
        ('{"limits": {"cpu_cores": Infinity}}', "limits.cpu_cores"),
        ('{"limits": {"disk_mb": 9223372036854775808}}', "limits.disk_mb"),
        ('{"egress": ["1.2.3.4"]}', "need a DNS name"),
        ('{"egress": ["\\u00e9.com"]}', "need a DNS name"),
        ('{"egress": [""]}', "egress"),
        ('{"egress": ["pypi.org:99999"]}', "port must be 1-65535"),
        ('{"egress": ["*."]}', "egress"),
    ],
)
def test_out_of_range_values_are_422_and_store_nothing(http: httpx.Client, raw: str, fragment: str) -> None:
    before = http.get("/v1/sandboxes").json()["sandboxes"]
    response = http.post("/v1/sandboxes", content=raw.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert fragment in error["message"], error["message"]
    listing = http.get("/v1/sandboxes")
    assert listing.status_code == 200
    assert listing.json()["sandboxes"] == before


def test_a_stored_row_with_bad_values_never_breaks_listing(http: httpx.Client, server: ServerProcess) -> None:
    sid = create(http)["id"]
    with contextlib.closing(sqlite3.connect(server.data_dir / "cloche.db", timeout=30)) as db:
        db.execute(
            "UPDATE sandboxes SET ttl_seconds = 1e300, language = 'cobol', limits = ? WHERE id = ?",
            ('{"memory_mb": -5, "cpu_cores": "many", "timeout_seconds": 2}', sid),
        )
        db.commit()
    listing = http.get("/v1/sandboxes")
    assert listing.status_code == 200, listing.text
    shown = next(s for s in listing.json()["sandboxes"] if s["id"] == sid)
    assert shown["limits"]["timeout_seconds"] == 2 and shown["limits"]["memory_mb"] is None
    assert shown["expires_at"].startswith("9999-")
    assert http.get(f"/v1/sandboxes/{sid}").status_code == 200
    assert http.delete(f"/v1/sandboxes/{sid}").status_code == 204


@pytest.mark.parametrize("raw", [b"{nope", b'{"language": "python",}', b'{"a": 1} trailing', b"\xff\xfe"])
def test_malformed_json_says_so_with_its_position(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/v1/sandboxes", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.startswith("the request body is not valid JSON"), message
    assert re.search(r"at (line \d+ )?(column|byte|position) \d+", message) or "UTF-8" in message, message
