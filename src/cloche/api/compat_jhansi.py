"""The seed's wire format under ``/jhansi``, so the unchanged ``jhansi`` 0.1.7 SDK and CLI run against cloche.

``JHANSI_BASE_URL=<cloche>/jhansi`` is the whole migration (docs/jhansi-migration.md). Each route translates one
seed call into one call of the services ``/v1`` uses (sandboxes, files, execs); nothing is implemented twice.

What the seed's client sends and reads (``jhansi/sandbox.py``, ``jhansi/cli.py``, ``jhansi/mcp_server.py``):

- ``POST /v1/sandboxes`` ``{"language", "agent"?, "created_by"?}`` -> reads ``id``.
- ``POST /v1/sandboxes/{id}/files`` and ``/upload``: multipart field ``file`` (a file; a zip). Answers unread.
- ``POST /v1/sandboxes/{id}/exec`` ``{"command", "test"}``, always SSE: the SDK keeps each ``data:`` line holding
  ``"type": "output"`` (that spelling) and appends its ``data`` plus a newline; the MCP server reads ``event: done``
  for ``exit_code`` and ``error``.
- ``GET /v1/sandboxes/{id}`` (any 2xx means "alive": the CLI recreates on an error), ``DELETE`` (answer unread).
- No authentication. With API keys configured, put the key in the URL's password: ``http://jhansi:KEY@host/jhansi``
  (httpx turns it into Basic auth); a Bearer header works too.
- Errors are FastAPI's ``{"detail": ...}``: the SDK only calls ``raise_for_status``, so the status is what matters.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shlex
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Request, Response, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from cloche.api.auth import tenant_for_key
from cloche.api.errors import documented
from cloche.api.state import AppState
from cloche.api.streaming import Emit, stream_events
from cloche.errors import ClocheError, Unsupported
from cloche.jail.runner import StreamName
from cloche.models import CreateSandbox, ExecRequest, ExecResult, Language, Sandbox, SeedErrorBody
from cloche.service.exec_call import ExecCall

log = logging.getLogger("cloche.jhansi")

PREFIX = "/jhansi"

# The seed ran `<command> 2>&1` in python:3.12-slim, where `python` exists; the jail has only `python3`.
PYTHON_ALIAS = 'python() { python3 "$@"; }\n'
# Test mode as the seed ran it: the command in the background, two seconds, then the language's test runner.
TEST_RUNNERS = {"python": "python3 -m pytest tests -v", "node": "npx jest"}
RUNNERS = {"python": ("python", ".py"), "python3": ("python", ".py"), "node": ("node", ".js", ".mjs", ".cjs")}
SHELL_SYNTAX = re.compile(r"[|&;<>()$`\\\n*?\[\]{}~#!]")
KEEPALIVE_SECONDS = 15.0  # an SSE comment while an install runs; the SDK reads with a 300 s timeout


class _SeedRoute(APIRoute):
    """Errors as the seed's FastAPI answered them, ``{"detail": ...}``, with cloche's status codes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ClocheError as exc:
                headers = {"WWW-Authenticate": 'Basic realm="cloche"'} if exc.status == 401 else None
                return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)
            except (RequestValidationError, ValidationError) as exc:
                detail = jsonable_encoder(
                    exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc.errors()
                )
                return JSONResponse({"detail": detail}, status_code=422)
            except HTTPException as exc:  # a body FastAPI could not parse (bad multipart, not UTF-8)
                return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

        return route


def seed_errors(*statuses: int, ok: dict[int | str, dict[str, Any]] | None = None) -> dict[int | str, dict[str, Any]]:
    """Error answers as documented: the seed's ``{"detail": ...}`` body."""
    return documented(*statuses, model=SeedErrorBody, ok=ok)


router = APIRouter(prefix=PREFIX, tags=["jhansi compatibility"], route_class=_SeedRoute)


def _state(request: Request) -> AppState:
    app_state: AppState = request.app.state.cloche
    return app_state


def _tenant(request: Request) -> str:
    """The tenant for a key sent as Basic auth (``http://any:KEY@host/jhansi``) or as a Bearer token."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            token = base64.b64decode(token.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            token = ""
    elif scheme.lower() != "bearer":
        token = ""
    return tenant_for_key(
        request.app.state.cloche.api_keys,
        token,
        "this server requires an API key: set JHANSI_BASE_URL=http://jhansi:<key>@<host>/jhansi",
    )


State = Annotated[AppState, Depends(_state)]
Tenant = Annotated[str, Depends(_tenant)]


class SeedCreate(BaseModel):
    """The seed's create body; like the seed, unknown fields are ignored."""

    language: Language = "python"
    agent: str | None = None
    created_by: str | None = None


class SeedExec(BaseModel):
    command: str
    test: bool = False


def _view(sandbox: Sandbox) -> dict[str, object]:
    # The seed's statuses were created | running | stopped | error; an idle cloche sandbox is "created".
    return {
        "id": sandbox.id,
        "language": sandbox.language,
        "status": "running" if sandbox.status == "running" else "created",
    }


@router.post("/v1/sandboxes", status_code=201, responses=seed_errors(400, 401, 413, 422, 429, 503))
async def create_sandbox(s: State, who: Tenant, body: SeedCreate | None = None) -> dict[str, object]:
    body = body or SeedCreate()
    sandbox = await s.placement.create(who, CreateSandbox(language=body.language))
    # cloche keeps no attribution fields; the log line is where agent and created_by survive.
    log.info(
        "jhansi sandbox created", extra={"sandbox_id": sandbox.id, "agent": body.agent, "created_by": body.created_by}
    )
    return _view(sandbox)


@router.get("/v1/sandboxes/{sandbox_id}", responses=seed_errors(401, 404, 422))
async def get_sandbox(s: State, who: Tenant, sandbox_id: str) -> dict[str, object]:
    return _view(s.sandboxes.view(s.sandboxes.get_row(who, sandbox_id)))


@router.delete("/v1/sandboxes/{sandbox_id}", status_code=204, responses=seed_errors(401, 404, 422))
async def delete_sandbox(s: State, who: Tenant, sandbox_id: str) -> Response:
    await s.placement.holding(who, sandbox_id).delete(who, sandbox_id)
    return Response(status_code=204)


@router.post("/v1/sandboxes/{sandbox_id}/files", status_code=201, responses=seed_errors(400, 401, 404, 413, 422))
async def upload_file(s: State, who: Tenant, sandbox_id: str, file: Annotated[UploadFile, File()]) -> dict[str, str]:
    written = await s.placement.holding(who, sandbox_id).upload(who, sandbox_id, [(file.filename or "", file.file)], "")
    return {"filename": written.files[0].path}


@router.post("/v1/sandboxes/{sandbox_id}/upload", status_code=201, responses=seed_errors(400, 401, 404, 413, 422))
async def upload_project(s: State, who: Tenant, sandbox_id: str, file: Annotated[UploadFile, File()]) -> dict[str, str]:
    await s.placement.holding(who, sandbox_id).extract(who, sandbox_id, file.file, "")
    return {"status": "uploaded"}


@router.post(
    "/v1/sandboxes/{sandbox_id}/exec",
    response_class=StreamingResponse,
    responses=seed_errors(400, 401, 404, 413, 422, ok={200: {"content": {"text/event-stream": {}}}}),
)
async def exec_in_sandbox(s: State, who: Tenant, sandbox_id: str, body: SeedExec) -> StreamingResponse:
    row = s.sandboxes.get_row(who, sandbox_id)  # a bad id is a plain 404, not a stream
    request = translate(body.command, body.test, row.language)
    return StreamingResponse(_stream(s, who, sandbox_id, request), media_type="text/event-stream")


def translate(command: str, test: bool, language: str | None) -> ExecRequest:
    """The seed's shell command as a cloche exec.

    ``python main.py args`` (or ``python3``, ``node x.js``) without shell syntax becomes a *file* exec, the form
    for which cloche detects and installs dependencies. Anything else runs as a shell command, in the environment
    the sandbox's last file exec installed.
    """
    if test:
        runner = TEST_RUNNERS.get(language or "python")
        if runner is None:
            raise Unsupported(f"test mode has no runner for {language}; run the tests as the command instead")
        return ExecRequest(command=f"{PYTHON_ALIAS}( {command}\n) >/dev/null 2>&1 &\nsleep 2\n{runner}")
    entry = _entry_form(command)
    if entry is not None:
        return ExecRequest(filename=entry[0], args=entry[1])
    return ExecRequest(command=PYTHON_ALIAS + command)


def _entry_form(command: str) -> tuple[str, list[str]] | None:
    if SHELL_SYNTAX.search(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) < 2 or words[0] not in RUNNERS or words[1].startswith("-"):
        return None
    _, *extensions = RUNNERS[words[0]]
    if not words[1].endswith(tuple(extensions)):
        return None
    return words[1], words[2:]


def _event(kind: str, **fields: object) -> bytes:
    # json.dumps' default separators matter: the SDK looks for the text '"type": "output"'.
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


class _Lines:
    """Each stream cut into lines, as the seed streamed them (the SDK appends the newline back)."""

    def __init__(self) -> None:
        self.partial: dict[StreamName, str] = {}

    def feed(self, stream: StreamName, text: str) -> list[bytes]:
        *lines, self.partial[stream] = (self.partial.get(stream, "") + text).split("\n")
        return [_event("output", data=line.removesuffix("\r"), stream=stream) for line in lines]

    def flush(self) -> list[bytes]:
        rest = [_event("output", data=text, stream=stream) for stream, text in self.partial.items() if text]
        self.partial.clear()
        return rest


def _last_line(text: str) -> str | None:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _epilogue(result: ExecResult) -> tuple[list[bytes], str | None]:
    """Lines the SDK user must see although their program printed none of them, and the done event's error."""
    if result.status == "succeeded":
        return [], None
    if result.status == "failed":  # the seed's "last error line"
        return [], _last_line(result.stderr) or _last_line(result.output)
    if result.status == "install_failed":  # the program never ran: the installer's words are all there is
        lines = result.output.splitlines()
        return [_event("output", data=line, stream="stderr") for line in lines], _last_line(result.output)
    error = result.error or result.status  # timed out, killed (the sandbox may be gone by now), ...
    return [_event("output", data=f"cloche: {error}", stream="stderr")], error


def _stream(s: AppState, who: str, sandbox_id: str, request: ExecRequest) -> AsyncIterator[bytes]:
    lines = _Lines()

    async def produce(emit: Emit) -> None:
        async def sink(stream: StreamName, text: str) -> None:
            for event in lines.feed(stream, text):
                await emit(event)

        try:
            result = await s.placement.holding(who, sandbox_id).execute(ExecCall(who, sandbox_id, request, sink))
            extra, error = _epilogue(result)
            for event in [*lines.flush(), *extra]:
                await emit(event)
            done = {"exit_code": result.exit_code, "duration_ms": result.duration_ms, "output": result.output}
            await emit(_event("done", **done, error=error, status=result.status, run_id=result.run_id))
        except ClocheError as exc:  # e.g. the file to run is missing, or the sandbox went away meanwhile
            for event in [*lines.flush(), _event("output", data=f"cloche: {exc.message}", stream="stderr")]:
                await emit(event)
            await emit(_event("done", exit_code=None, duration_ms=0, output="", error=exc.message, status=exc.code))

    return stream_events(produce, keepalive_seconds=KEEPALIVE_SECONDS)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
