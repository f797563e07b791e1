"""The node agent protocol's HTTP/JSON form, both sides of it: the path prefix, the tenant header, the error body
and the exec stream (``server.py`` writes it, ``remote.py`` reads it).

An exec is ``POST {PREFIX}/sandboxes/{id}/exec`` with the ``ExecRequest`` as its body and the tenant in
``TENANT_HEADER``; the answer is one JSON event a line: ``output`` and ``install`` as the run goes, then ``done``
with the result or ``error`` with the ``ClocheError``'s code and message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

from cloche.agent.protocol import PROTOCOL_VERSION
from cloche.errors import ALL_ERRORS, ClocheError
from cloche.jail.runner import StreamName
from cloche.models import ExecResult
from cloche.service.exec_call import ExecCall

PREFIX = f"/agent/v{PROTOCOL_VERSION}"
TENANT_HEADER = "x-cloche-tenant"
NDJSON = "application/x-ndjson"
Emit = Callable[[bytes], Awaitable[None]]
ERRORS_BY_CODE: dict[str, type[ClocheError]] = {cls.code: cls for cls in ALL_ERRORS}
log = logging.getLogger("cloche.agent")


def raise_error(body: Mapping[str, Any], status: int) -> NoReturn:
    """Raise the ``ClocheError`` an agent answered with (an unknown code keeps the base class)."""
    error = body.get("error") if isinstance(body.get("error"), dict) else None
    if error is None:
        raise ClocheError(f"the node agent answered {status} without an error body")
    raise ERRORS_BY_CODE.get(str(error.get("code")), ClocheError)(str(error.get("message", "")))


def exec_path(call: ExecCall) -> str:
    return f"/sandboxes/{call.sandbox_id}/exec"


def exec_body(call: ExecCall) -> dict[str, Any]:
    return call.request.model_dump(mode="json", exclude_unset=True)


def _line(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


async def send_exec(execute: Callable[[ExecCall], Awaitable[ExecResult]], call: ExecCall, emit: Emit) -> None:
    """The server side: run ``call`` with its output and progress sent as lines, then its end."""

    async def output(stream: StreamName, text: str) -> None:
        await emit(_line({"event": "output", "stream": stream, "data": text}))

    async def progress(event: Mapping[str, Any]) -> None:
        await emit(_line({"event": "install", "data": dict(event)}))

    try:
        result = await execute(dataclasses.replace(call, on_output=output, on_progress=progress))
        await emit(_line({"event": "done", "result": result.model_dump(mode="json")}))
    except ClocheError as exc:
        await emit(_line({"event": "error", **exc.to_dict()}))
    except Exception as exc:  # a bug on this node: the caller gets an error event, not a stream cut short
        # Without this line the API server saw the stream end and reported the agent as not answering, which
        # sent operators looking at the network instead of this node's log.
        log.exception("an exec in sandbox %s failed on this node", call.sandbox_id)
        failure = ClocheError(f"the node agent failed while running the exec ({type(exc).__name__}); see its log")
        await emit(_line({"event": "error", **failure.to_dict()}))


async def receive_exec(line: str, call: ExecCall, status: int) -> ExecResult | None:
    """The client side: one line of the stream, passed to the call's sinks; the result once it is ``done``."""
    if not line:
        return None
    event = json.loads(line)
    kind = event.get("event")
    if kind == "output" and call.on_output is not None:
        await call.on_output(event["stream"], event["data"])
    elif kind == "install" and call.on_progress is not None:
        await call.on_progress(event["data"])
    elif kind == "done":
        return ExecResult.model_validate(event["result"])
    elif kind == "error":
        raise_error(event, status)
    return None
