"""Tenancy: each API key is a tenant; with no keys configured everyone is the 'default' tenant."""

from __future__ import annotations

import hmac

from fastapi import Request

from cloche.errors import Unauthorized

DEFAULT_TENANT = "default"


def tenant(request: Request) -> str:
    keys: dict[str, str] = request.app.state.cloche.api_keys
    if not keys:
        return DEFAULT_TENANT
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <api key>'; this server requires an API key")
    for key, name in keys.items():
        if hmac.compare_digest(key.encode(), token.strip().encode()):
            return name
    raise Unauthorized("unknown API key")
