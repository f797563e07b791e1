"""The agent's HTTP side of the node agent protocol (``/agent/v1``): each route is one call into the in-process
agent. Callers are API servers, never users: they authenticate with the shared agent token and name the tenant
they act for in ``X-Cloche-Tenant`` (the agent checks it against the sandbox row, as the API does)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from cloche.agent.local import LocalAgent
from cloche.agent.protocol import PROTOCOL_VERSION
from cloche.agent.wire import NDJSON, PREFIX, TENANT_HEADER, send_exec
from cloche.api.state import AppState
from cloche.api.streaming import stream_events
from cloche.errors import InvalidRequest, Unauthorized
from cloche.models import CreateSandbox, ExecRequest, FileList, FilesWritten, Sandbox
from cloche.service.exec_call import ExecCall


def authorised(request: Request) -> AppState:
    state: AppState = request.app.state.cloche
    token = state.settings.agent_token
    if token is not None:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
            raise Unauthorized("this node agent needs 'Authorization: Bearer <CLOCHE_AGENT_TOKEN>'")
    return state


def tenant(request: Request, _: Annotated[AppState, Depends(authorised)]) -> str:
    who = request.headers.get(TENANT_HEADER, "")
    if not who:
        raise InvalidRequest(f"a node agent request names its tenant in {TENANT_HEADER}")
    return who


def local(state: Annotated[AppState, Depends(authorised)]) -> LocalAgent:
    return state.local_agent


router = APIRouter(prefix=PREFIX, tags=["agent"])
Agent = Annotated[LocalAgent, Depends(local)]
Tenant = Annotated[str, Depends(tenant)]
Folder = Annotated[str, Form()]


@router.get("/info")
async def info(state: Annotated[AppState, Depends(authorised)]) -> dict[str, Any]:
    cfg = state.settings
    return {"protocol": PROTOCOL_VERSION, "name": cfg.node_name, "uid_base": cfg.uid_base, "uid_count": cfg.uid_count}


@router.post("/sandboxes", status_code=201, response_model=Sandbox)
async def create(agent: Agent, who: Tenant, body: CreateSandbox) -> Sandbox:
    return await agent.create(who, body)


@router.delete("/sandboxes/{sandbox_id}", status_code=204)
async def delete(agent: Agent, who: Tenant, sandbox_id: str) -> Response:
    await agent.delete(who, sandbox_id)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/files", status_code=201, response_model=FilesWritten)
async def upload(
    agent: Agent,
    who: Tenant,
    sandbox_id: str,
    file: Annotated[list[UploadFile], File()],
    path: Annotated[str, Form()] = "",
) -> FilesWritten:
    uploads: list[tuple[str, BinaryIO]] = [(f.filename or "", f.file) for f in file]
    return await agent.upload(who, sandbox_id, uploads, path)


@router.post("/sandboxes/{sandbox_id}/upload", status_code=201, response_model=FilesWritten)
async def extract(
    agent: Agent, who: Tenant, sandbox_id: str, file: Annotated[UploadFile, File()], path: Folder = ""
) -> FilesWritten:
    return await agent.extract(who, sandbox_id, file.file, path)


@router.get("/sandboxes/{sandbox_id}/files", response_model=FileList)
async def listing(agent: Agent, who: Tenant, sandbox_id: str, path: Annotated[str, Query()] = "") -> FileList:
    return await agent.listing(who, sandbox_id, path)


@router.get("/sandboxes/{sandbox_id}/file")
async def read(agent: Agent, who: Tenant, sandbox_id: str, path: Annotated[str, Query()]) -> Response:
    return Response(await agent.read(who, sandbox_id, path), media_type="application/octet-stream")


@router.delete("/sandboxes/{sandbox_id}/file", status_code=204)
async def delete_file(agent: Agent, who: Tenant, sandbox_id: str, path: Annotated[str, Query()]) -> Response:
    await agent.delete_file(who, sandbox_id, path)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/exec")
async def execute(agent: Agent, who: Tenant, sandbox_id: str, body: ExecRequest, request: Request) -> Response:
    state: AppState = request.app.state.cloche
    state.sandboxes.get_row(who, sandbox_id)  # a bad id is a plain 404, not a stream
    call = ExecCall(who, sandbox_id, body)
    # The API server closing the stream cancels the run, as a client leaving does.
    return StreamingResponse(stream_events(lambda emit: send_exec(agent.execute, call, emit)), media_type=NDJSON)
