"""Step timestamps of one exec request, for the exec profile (``CLOCHE_STEP_TIMINGS``; ``bench/exec_profile.py``).

``StepTimings`` (ASGI) starts a clock per ``POST .../exec`` and, once the answer is sent, logs one line
``exec steps`` whose ``steps`` field lists ``[name, ms since the request arrived]`` in order. Code on the exec
path calls ``mark(name)`` after each step: a no-op (one context-variable read) unless a clock runs. The clock
lives in a context variable, so the exec's own task and its worker threads (which copy the context) mark the
same clock. Monotonic, in-process timestamps: read as fractions of the total they stay meaningful on a busy host.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cloche.steps")

_clock: ContextVar[list[tuple[str, int]] | None] = ContextVar("cloche_step_clock", default=None)


def mark(name: str) -> None:
    """The step ``name`` ends now (in the current request's clock, if one runs)."""
    clock = _clock.get()
    if clock is not None:
        clock.append((name, time.perf_counter_ns()))


class StepTimings:
    """Times every exec request passing through (plain answers; a streamed one ends at its last event)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith("/exec"):
            await self.app(scope, receive, send)
            return
        clock = [("request received", time.perf_counter_ns())]
        token = _clock.set(clock)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                mark("response started")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                mark("response sent")

        try:
            await self.app(scope, receive, timed_send)
        finally:
            _clock.reset(token)
            start = clock[0][1]
            steps = [[name, round((at - start) / 1e6, 3)] for name, at in clock]
            log.info("exec steps", extra={"path": scope.get("path"), "steps": steps})
