"""Tenancy: each API key is a tenant; with no keys configured everyone is the 'default' tenant."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from cloche.errors import Unauthorized

DEFAULT_TENANT = "default"


def tenant_for_key(keys: dict[str, str], token: str, missing: str) -> str:
    """The tenant ``token`` names; ``missing`` is the message when none was sent. Keys are never logged."""
    if not keys:
        return DEFAULT_TENANT
    if not token.strip():
        raise Unauthorized(missing)
    sent = token.strip().encode()
    for key, name in keys.items():
        if hmac.compare_digest(key.encode(), sent):
            return name
    raise Unauthorized("unknown API key")


def tenant(request: HTTPConnection) -> str:
    """The tenant of a request's (or a WebSocket's) API key."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return tenant_for_key(
        request.app.state.cloche.api_keys,
        token if scheme.lower() == "bearer" else "",
        "send 'Authorization: Bearer <api key>'; this server requires an API key",
    )
