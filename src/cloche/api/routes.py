"""Routes: validate, resolve the tenant, call one service method, serialise. Nothing else lives here."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from cloche.agent.protocol import put
from cloche.api.auth import tenant
from cloche.api.disconnect import unless_client_leaves
from cloche.api.errors import documented
from cloche.api.state import AppState
from cloche.api.streaming import Emit, stream_events
from cloche.errors import ClocheError
from cloche.jail.runner import StreamName
from cloche.models import (
    CreateSandbox,
    CreateSecret,
    ExecRequest,
    ExecResult,
    FileEntry,
    FileList,
    FilesWritten,
    RunList,
    RunRecord,
    Sandbox,
    SandboxList,
    SecretInfo,
    SecretList,
)
from cloche.process_models import ProcessInfo
from cloche.service.deps import Progress
from cloche.service.exec_call import ExecCall
from cloche.steps import mark
from cloche.store.metadata import SecretRow

router = APIRouter(prefix="/v1")
CYCLONEDX = "application/vnd.cyclonedx+json"
OCTETS = "application/octet-stream"
SSE = "text/event-stream"


# Both dependencies are coroutines: FastAPI runs a plain function in its thread pool, two thread hops on every
# request for a header parse and an attribute read.
async def request_tenant(request: Request) -> str:
    return tenant(request)


Tenant = Annotated[str, Depends(request_tenant)]


async def state(request: Request) -> AppState:
    app_state: AppState = request.app.state.cloche
    return app_state


State = Annotated[AppState, Depends(state)]
NAMES_A_SANDBOX = (401, 404, 422)  # the answers of every route with a {sandbox_id}, besides its own
WRITES = documented(400, *NAMES_A_SANDBOX, 413)  # a route writing into a workspace: a bad path, or too much


@router.post("/sandboxes", status_code=201, response_model=Sandbox, responses=documented(401, 413, 422, 429, 503))
async def create_sandbox(s: State, who: Tenant, body: CreateSandbox | None = None) -> Sandbox:
    body = body or CreateSandbox()
    s.secrets.check(who, body.secrets or [])
    return await s.placement.create(who, body)


def _secret_info(row: SecretRow) -> SecretInfo:
    return SecretInfo(name=row.name, hosts=row.hosts, created_at=row.created_at)


@router.post("/secrets", status_code=201, response_model=SecretInfo, responses=documented(401, 422))
async def put_secret(s: State, who: Tenant, body: CreateSecret) -> SecretInfo:
    return _secret_info(s.secrets.put(who, body.name, body.value, body.hosts))


@router.get("/secrets", response_model=SecretList, responses=documented(401))
async def list_secrets(s: State, who: Tenant) -> SecretList:
    return SecretList(secrets=[_secret_info(row) for row in s.secrets.listing(who)])


@router.delete("/secrets/{name}", status_code=204, responses=documented(401, 404, 422))
async def delete_secret(s: State, who: Tenant, name: str) -> Response:
    s.secrets.delete(who, name)
    return Response(status_code=204)


@router.get("/sandboxes", response_model=SandboxList, responses=documented(401))
async def list_sandboxes(s: State, who: Tenant) -> SandboxList:
    return SandboxList(sandboxes=s.sandboxes.list(who))


@router.get("/sandboxes/{sandbox_id}", response_model=Sandbox, responses=documented(*NAMES_A_SANDBOX))
async def get_sandbox(s: State, who: Tenant, sandbox_id: str) -> Sandbox:
    return s.sandboxes.view(s.sandboxes.get_row(who, sandbox_id))


@router.delete("/sandboxes/{sandbox_id}", status_code=204, responses=documented(*NAMES_A_SANDBOX))
async def delete_sandbox(s: State, who: Tenant, sandbox_id: str) -> Response:
    await s.placement.holding(who, sandbox_id).delete(who, sandbox_id)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/files", status_code=201, response_model=FilesWritten, responses=WRITES)
async def upload_files(
    s: State,
    who: Tenant,
    sandbox_id: str,
    file: Annotated[list[UploadFile], File(description="One or more files.")],
    path: Annotated[str, Form(description="Folder to place the files in.")] = "",
) -> FilesWritten:
    uploads: list[tuple[str, BinaryIO]] = [(f.filename or "", f.file) for f in file]
    return await s.placement.holding(who, sandbox_id).upload(who, sandbox_id, uploads, path)


@router.post("/sandboxes/{sandbox_id}/upload", status_code=201, response_model=FilesWritten, responses=WRITES)
async def upload_archive(
    s: State,
    who: Tenant,
    sandbox_id: str,
    file: Annotated[UploadFile, File(description="A .zip or .tar(.gz/.bz2/.xz) archive.")],
    path: Annotated[str, Form(description="Folder to extract into.")] = "",
) -> FilesWritten:
    return await s.placement.holding(who, sandbox_id).extract(who, sandbox_id, file.file, path)


@router.get("/sandboxes/{sandbox_id}/files", response_model=FileList, responses=documented(400, *NAMES_A_SANDBOX))
async def list_files(
    s: State, who: Tenant, sandbox_id: str, path: Annotated[str, Query(description="Folder to list.")] = ""
) -> FileList:
    return await s.placement.holding(who, sandbox_id).listing(who, sandbox_id, path)


@router.put("/sandboxes/{sandbox_id}/files/{path:path}", status_code=201, response_model=FileEntry, responses=WRITES)
async def put_file(s: State, who: Tenant, sandbox_id: str, path: str, request: Request) -> FileEntry:
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        return await put(s.placement.holding(who, sandbox_id), who, sandbox_id, path, spool)  # type: ignore[arg-type]


@router.get(
    "/sandboxes/{sandbox_id}/files/{path:path}",
    response_class=Response,
    responses=documented(
        400, *NAMES_A_SANDBOX, ok={200: {"content": {OCTETS: {}}, "description": "The file's bytes."}}
    ),
)
async def get_file(s: State, who: Tenant, sandbox_id: str, path: str) -> Response:
    data = await s.placement.holding(who, sandbox_id).read(who, sandbox_id, path)
    return Response(content=data, media_type=OCTETS)


@router.delete(
    "/sandboxes/{sandbox_id}/files/{path:path}", status_code=204, responses=documented(400, *NAMES_A_SANDBOX)
)
async def delete_file(s: State, who: Tenant, sandbox_id: str, path: str) -> Response:
    await s.placement.holding(who, sandbox_id).delete_file(who, sandbox_id, path)
    return Response(status_code=204)


@router.post(
    "/sandboxes/{sandbox_id}/exec",
    response_model=ExecResult | ProcessInfo,
    responses=documented(400, *NAMES_A_SANDBOX, 409, 413, 503, ok={200: {"content": {SSE: {}}}}),
)
async def exec_in_sandbox(
    s: State, who: Tenant, sandbox_id: str, body: ExecRequest, request: Request
) -> ExecResult | ProcessInfo | Response:
    """Run a file or a command and answer with its result; with ``"background": true``, start it and answer at
    once with the process (always JSON)."""
    mark("route: authenticated, body validated")
    if body.background:
        s.placement.require_local(who, sandbox_id, "background processes")
        return await unless_client_leaves(request, s.processes.start(who, sandbox_id, body))
    if SSE in request.headers.get("accept", ""):
        s.sandboxes.get_row(who, sandbox_id)  # a bad id is a plain 404, not a stream
        return StreamingResponse(_stream(s, who, sandbox_id, body), media_type=SSE)
    call = ExecCall(who, sandbox_id, body)
    return await unless_client_leaves(request, s.placement.holding(who, sandbox_id).execute(call))


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def sse_outcome(emit: Emit, run: Callable[[Progress], Awaitable[BaseModel]]) -> None:
    """The end of an exec's or a cell's stream: ``run(progress)`` with each install event sent as ``install``,
    then ``done`` with its result, or ``error`` with a ``ClocheError``'s code and message."""

    async def progress(event: Mapping[str, Any]) -> None:
        await emit(sse("install", dict(event)))

    try:
        result = await run(progress)
        await emit(sse("done", result.model_dump(mode="json")))
    except ClocheError as exc:
        await emit(sse("error", exc.to_dict()["error"]))


def _stream(s: AppState, who: str, sandbox_id: str, body: ExecRequest) -> AsyncIterator[bytes]:
    async def produce(emit: Emit) -> None:
        async def sink(name: StreamName, text: str) -> None:
            await emit(sse(name, {"data": text}))

        def run(progress: Progress) -> Awaitable[ExecResult]:
            return s.placement.holding(who, sandbox_id).execute(ExecCall(who, sandbox_id, body, sink, progress))

        await sse_outcome(emit, run)

    return stream_events(produce)


@router.get("/sandboxes/{sandbox_id}/runs", response_model=RunList, responses=documented(*NAMES_A_SANDBOX))
async def list_runs(
    s: State, who: Tenant, sandbox_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> RunList:
    return s.execs.runs(who, sandbox_id, limit)


@router.get("/sandboxes/{sandbox_id}/runs/{run_id}", response_model=RunRecord, responses=documented(*NAMES_A_SANDBOX))
async def get_run(s: State, who: Tenant, sandbox_id: str, run_id: str) -> RunRecord:
    return s.execs.run(who, sandbox_id, run_id)


@router.get(
    "/sandboxes/{sandbox_id}/runs/{run_id}/sbom",
    response_class=JSONResponse,
    responses=documented(
        *NAMES_A_SANDBOX, ok={200: {"content": {CYCLONEDX: {}}, "description": "CycloneDX 1.6 SBOM."}}
    ),
)
async def get_sbom(s: State, who: Tenant, sandbox_id: str, run_id: str) -> JSONResponse:
    return JSONResponse(s.evidence.sbom(who, sandbox_id, run_id), media_type=CYCLONEDX)


@router.get("/sandboxes/{sandbox_id}/runs/{run_id}/deps", responses=documented(*NAMES_A_SANDBOX))
async def get_run_deps(s: State, who: Tenant, sandbox_id: str, run_id: str) -> dict[str, Any]:
    return s.evidence.lock(who, sandbox_id, run_id)


@router.get("/sandboxes/{sandbox_id}/deps/diff", responses=documented(400, *NAMES_A_SANDBOX))
async def diff_deps(
    s: State,
    who: Tenant,
    sandbox_id: str,
    from_run: Annotated[str, Query(alias="from", description="Earlier run id.")],
    to_run: Annotated[str, Query(alias="to", description="Later run id.")],
) -> dict[str, Any]:
    return s.evidence.diff(who, sandbox_id, from_run, to_run)
