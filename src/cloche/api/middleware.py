"""ASGI middleware: body size cap, and JSON as the default body type."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloche.api.compat_jhansi import PREFIX as SEED_PREFIX
from cloche.api.errors import error_body


class BodyTooLarge(Exception):
    pass


# Body size cap enforced while the body streams in, so a huge upload is refused before it is spooled.


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"request body is larger than the {self.max_bytes}-byte limit"
        seed = str(scope.get("path", "")).startswith(SEED_PREFIX + "/")  # the seed's clients read {"detail": ...}
        body = json.dumps({"detail": message} if seed else error_body("too_large", message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class JsonByDefault:
    """Treat form-encoded bodies as JSON.

    ``curl -d '{...}'`` labels its body application/x-www-form-urlencoded; the API has no form routes,
    so the seed's documented curl calls must work verbatim.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [
                (k, b"application/json")
                if k == b"content-type" and v.startswith(b"application/x-www-form-urlencoded")
                else (k, v)
                for k, v in scope.get("headers", [])
            ]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
