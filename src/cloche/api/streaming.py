"""One streamed response loop for every server-sent-events route: a producer task emits events, the
response yields them in order, and a run nobody watches any more is cancelled (which kills it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

Emit = Callable[[bytes], Awaitable[None]]
Producer = Callable[[Emit], Awaitable[None]]
KEEPALIVE = b": keepalive\n\n"


async def stream_events(produce: Producer, *, keepalive_seconds: float | None = None) -> AsyncIterator[bytes]:
    """Run ``produce(emit)`` as a task and yield what it emits until it returns.

    With ``keepalive_seconds``, an SSE comment is sent whenever nothing was emitted for that long, so
    clients and proxies with read timeouts keep the connection through a long install.
    """
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def run() -> None:
        try:
            await produce(queue.put)
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), keepalive_seconds)
            except TimeoutError:
                yield KEEPALIVE
                continue
            if item is None:
                break
            yield item
    finally:
        # The client went away (or the stream ended): a run nobody watches is killed.
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
