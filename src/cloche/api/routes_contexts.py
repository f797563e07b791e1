"""Routes of code contexts: create, list, get, restart and delete a context; run a cell (JSON or SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from cloche.api.disconnect import unless_client_leaves
from cloche.api.errors import documented
from cloche.api.routes import NAMES_A_SANDBOX, SSE, State, Tenant, sse, sse_outcome
from cloche.api.state import AppState
from cloche.api.streaming import Emit, stream_events
from cloche.models_code import CodeOutput, CodeRequest, CodeResult, Context, ContextList, CreateContext
from cloche.service.contexts import CodeCall

router = APIRouter(prefix="/v1/sandboxes/{sandbox_id}")


@router.post("/contexts", status_code=201, response_model=Context, responses=documented(*NAMES_A_SANDBOX, 409, 503))
async def create_context(s: State, who: Tenant, sandbox_id: str, body: CreateContext | None = None) -> Context:
    s.placement.require_local(who, sandbox_id, "code contexts")
    return await s.contexts.create(who, sandbox_id, body or CreateContext())


@router.get("/contexts", response_model=ContextList, responses=documented(*NAMES_A_SANDBOX))
async def list_contexts(s: State, who: Tenant, sandbox_id: str) -> ContextList:
    return ContextList(contexts=s.contexts.listing(who, sandbox_id))


@router.get("/contexts/{context_id}", response_model=Context, responses=documented(*NAMES_A_SANDBOX))
async def get_context(s: State, who: Tenant, sandbox_id: str, context_id: str) -> Context:
    return s.contexts.get(who, sandbox_id, context_id)


@router.post("/contexts/{context_id}/restart", response_model=Context, responses=documented(*NAMES_A_SANDBOX, 503))
async def restart_context(s: State, who: Tenant, sandbox_id: str, context_id: str) -> Context:
    return await s.contexts.restart(who, sandbox_id, context_id)


@router.delete("/contexts/{context_id}", status_code=204, responses=documented(*NAMES_A_SANDBOX))
async def delete_context(s: State, who: Tenant, sandbox_id: str, context_id: str) -> Response:
    await s.contexts.delete(who, sandbox_id, context_id)
    return Response(status_code=204)


@router.post(
    "/code",
    response_model=CodeResult,
    responses=documented(400, *NAMES_A_SANDBOX, 409, 413, 503, ok={200: {"content": {SSE: {}}}}),
)
async def run_code(
    s: State, who: Tenant, sandbox_id: str, body: CodeRequest, request: Request
) -> CodeResult | Response:
    s.placement.require_local(who, sandbox_id, "code contexts")
    if SSE in request.headers.get("accept", ""):
        s.sandboxes.get_row(who, sandbox_id)  # a bad id is a plain 404, not a stream
        return StreamingResponse(_stream(s, who, sandbox_id, body), media_type=SSE)
    return await unless_client_leaves(request, s.contexts.run(CodeCall(who, sandbox_id, body)))


def _stream(s: AppState, who: str, sandbox_id: str, body: CodeRequest) -> AsyncIterator[bytes]:
    """Events: ``stdout``/``stderr`` ({"data"}), ``result`` (one CodeOutput), ``install``, then ``done``."""

    async def produce(emit: Emit) -> None:
        async def sink(kind: str, value: Any) -> None:
            data = (
                value.model_dump(mode="json", exclude_none=True) if isinstance(value, CodeOutput) else {"data": value}
            )
            await emit(sse(kind, data))

        await sse_outcome(emit, lambda progress: s.contexts.run(CodeCall(who, sandbox_id, body, sink, progress)))

    return stream_events(produce)
