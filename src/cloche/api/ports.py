"""The ports proxy: ``/v1/sandboxes/{id}/ports/{port}/...`` reaches what a background process serves on ``port``.

The jail has no network the server could reach, and gets none: a relay inside the jail (``jail/port_relay_jail.py``)
exposes each listening port as a unix socket in the process's socket folder, and this module speaks HTTP (httpx)
or WebSocket (websockets) to that socket. The sandbox's program sees requests for ``/...`` with ``X-Forwarded-*``
headers naming the public prefix; the caller's API key is never passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import APIRouter, Request, Response, WebSocket
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import HTTPConnection
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from cloche.api.auth import tenant
from cloche.api.errors import documented
from cloche.api.routes import NAMES_A_SANDBOX, State, Tenant
from cloche.api.state import AppState
from cloche.errors import ClocheError, InvalidRequest, PortFailed

log = logging.getLogger("cloche.ports")
router = APIRouter(prefix="/v1")
PORT_PATH = "/sandboxes/{sandbox_id}/ports/{port}/{path:path}"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
Port = Annotated[int, PathParam(ge=1, le=65535, description="The TCP port the process listens on in the sandbox.")]
CONNECT_SECONDS = 10.0
READ_SECONDS = 300.0  # a slow answer (a long computation, a streamed response's pause) before 502
# Never passed on: per-connection headers, and the caller's cloche credentials.
NOT_FORWARDED = frozenset(
    {
        "authorization",
        "connection",
        "host",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
WS_NOT_FORWARDED = NOT_FORWARDED | {
    "content-length",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-version",
}


def _target(connection: HTTPConnection) -> tuple[str, bytes]:
    """The public prefix (``/v1/sandboxes/<id>/ports/<port>``) and the path with query to ask upstream."""
    raw: bytes = connection.scope.get("raw_path") or connection.scope["path"].encode()
    parts = raw.split(b"/")
    prefix, rest = b"/".join(parts[:6]), b"/" + b"/".join(parts[6:])
    query: bytes = connection.scope.get("query_string", b"")
    return prefix.decode("latin-1"), rest + (b"?" + query if query else b"")


def _headers(connection: HTTPConnection, prefix: str, dropped: frozenset[str]) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in connection.headers.items() if k not in dropped]
    client = connection.client.host if connection.client else ""
    return [
        *kept,
        ("x-forwarded-for", client),
        ("x-forwarded-host", connection.headers.get("host", "")),
        ("x-forwarded-proto", connection.url.scheme.replace("ws", "http")),
        ("x-forwarded-prefix", prefix),
    ]


async def _proxy_http(s: State, who: Tenant, sandbox_id: str, port: Port, path: str, request: Request) -> Response:
    """Whatever the program listening on ``port`` answers (any method, body and headers)."""
    socket = s.processes.port_socket(who, sandbox_id, port)
    prefix, target = _target(request)
    client = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket)),
        timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
    )
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    upstream = client.build_request(
        request.method,
        httpx.URL(f"http://127.0.0.1:{port}").copy_with(raw_path=target),
        headers=_headers(request, prefix, NOT_FORWARDED),
        content=request.stream() if has_body else None,
    )
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.TransportError as exc:
        await client.aclose()
        raise PortFailed(f"port {port} of sandbox {sandbox_id} did not answer: {exc or type(exc).__name__}") from exc
    response = StreamingResponse(_relay_body(answer, client), status_code=answer.status_code)
    dropped = NOT_FORWARDED | {"date"}  # the server adds its own
    response.raw_headers = [(k, v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in dropped]
    return response


async def _relay_body(answer: httpx.Response, client: httpx.AsyncClient) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.TransportError as exc:  # the answer has begun: all that can be done is to end it early
        log.info("a proxied answer broke off", extra={"error": str(exc)})
    finally:
        await answer.aclose()
        await client.aclose()


for _method in METHODS:
    router.add_api_route(
        PORT_PATH,
        _proxy_http,
        methods=[_method],
        name=f"proxy_port_{_method.lower()}",
        response_class=Response,
        responses=documented(
            *NAMES_A_SANDBOX,
            502,
            ok={200: {"content": {"*/*": {}}, "description": "What the sandbox's program answered, as it did."}},
        ),
    )


@router.websocket(PORT_PATH)
async def proxy_port_websocket(websocket: WebSocket, sandbox_id: str, port: int, path: str) -> None:
    """A WebSocket to the program listening on ``port``: frames relayed both ways until either side closes."""
    s: AppState = websocket.app.state.cloche
    prefix, target = _target(websocket)
    try:
        if not 1 <= port <= 65535:
            raise InvalidRequest(f"port {port} is not a TCP port (1-65535)")
        socket = s.processes.port_socket(tenant(websocket), sandbox_id, port)
        upstream = await _open_upstream(websocket, socket, port, target, prefix, sandbox_id)
    except ClocheError as exc:
        await _refuse(websocket, exc)
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _pump(websocket, upstream)


async def _open_upstream(
    websocket: WebSocket, socket: Path, port: int, target: bytes, prefix: str, sandbox_id: str
) -> ClientConnection:
    offered = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    try:
        return await unix_connect(
            str(socket),
            uri=f"ws://127.0.0.1:{port}{target.decode('latin-1')}",
            subprotocols=offered or None,
            additional_headers=_headers(websocket, prefix, WS_NOT_FORWARDED),
            open_timeout=CONNECT_SECONDS,
            max_size=None,  # the program's own limits apply; the server only relays
            compression=None,
        )
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise PortFailed(f"port {port} of sandbox {sandbox_id} refused the WebSocket: {exc}") from exc


async def _refuse(websocket: WebSocket, error: ClocheError) -> None:
    """Answer the upgrade with the error's status and body where the server can, else a policy close."""
    try:
        await websocket.send_denial_response(JSONResponse(error.to_dict(), status_code=error.status))
    except RuntimeError:  # no denial-response extension: the client sees a 403
        await websocket.close(code=1008, reason=error.code)


async def _pump(websocket: WebSocket, upstream: ClientConnection) -> None:
    async def inbound() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code") or 1000)
                return
            text, data = message.get("text"), message.get("bytes")
            await upstream.send(text if text is not None else (data or b""))

    async def outbound() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in upstream:
                if isinstance(frame, str):
                    await websocket.send_text(frame)
                else:
                    await websocket.send_bytes(frame)
        with contextlib.suppress(RuntimeError):  # the client may have gone first
            await websocket.close(code=upstream.close_code or 1000)

    tasks = [asyncio.create_task(inbound()), asyncio.create_task(outbound())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
