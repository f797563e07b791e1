"""A plain (non-streaming) answer whose client leaves before it is ready: the work behind it is cancelled.

Streamed answers learn it from their response loop (``streaming.py``); a plain answer has no loop, so the
request's own disconnect message is watched next to the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request, Response

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's status for "the client closed the request"; nobody receives it


async def _client_left(request: Request) -> None:
    # The body has been read by now: the next message the server delivers for this request is its disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T | Response:
    """Await ``work``; if the client disconnects first, cancel it (a run nobody waits for is killed)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_client_left(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel("the client disconnected")
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return Response(status_code=CLIENT_CLOSED)
    return task.result()
