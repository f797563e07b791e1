"""Routes of background processes (started by an exec with ``"background": true``): list, read, follow, stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from cloche.api.errors import documented
from cloche.api.routes import NAMES_A_SANDBOX, SSE, State, Tenant, sse
from cloche.api.streaming import Emit, stream_events
from cloche.process_models import ProcessInfo, ProcessList, ProcessLogs

router = APIRouter(prefix="/v1")
PROCESS = "/sandboxes/{sandbox_id}/processes/{process_id}"


@router.get("/sandboxes/{sandbox_id}/processes", response_model=ProcessList, responses=documented(*NAMES_A_SANDBOX))
async def list_processes(s: State, who: Tenant, sandbox_id: str) -> ProcessList:
    return s.processes.listing(who, sandbox_id)


@router.get(PROCESS, response_model=ProcessInfo, responses=documented(*NAMES_A_SANDBOX))
async def get_process(s: State, who: Tenant, sandbox_id: str, process_id: str) -> ProcessInfo:
    return s.processes.get(who, sandbox_id, process_id)


@router.get(
    f"{PROCESS}/logs",
    response_model=ProcessLogs,
    responses=documented(*NAMES_A_SANDBOX, ok={200: {"content": {SSE: {}}}}),
)
async def process_logs(
    s: State,
    who: Tenant,
    sandbox_id: str,
    process_id: str,
    request: Request,
    since: Annotated[int, Query(ge=0, description="Offset to read from (a previous answer's 'end').")] = 0,
) -> ProcessLogs | Response:
    """The kept output; with ``Accept: text/event-stream`` it is followed until the process ends."""
    if SSE not in request.headers.get("accept", ""):
        return s.processes.logs(who, sandbox_id, process_id, since)
    chunks, last = s.processes.follow(who, sandbox_id, process_id, since)  # a bad id: a plain 404, not a stream

    async def produce(emit: Emit) -> None:
        async for chunk in chunks:
            await emit(sse(chunk.stream, {"data": chunk.text, "offset": chunk.offset}))
        await emit(sse("done", last().model_dump(mode="json")))

    events: AsyncIterator[bytes] = stream_events(produce, keepalive_seconds=15.0)
    return StreamingResponse(events, media_type=SSE)


@router.delete(PROCESS, response_model=ProcessInfo, responses=documented(*NAMES_A_SANDBOX))
async def stop_process(s: State, who: Tenant, sandbox_id: str, process_id: str) -> ProcessInfo:
    """Stop it (its jail, cgroup and sockets go with it) and forget it; the answer is its last state."""
    return await s.processes.stop(who, sandbox_id, process_id)
