"""The exec step clock: marks made while an exec request is handled come out as one ordered log line."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.types import Receive, Scope, Send

from cloche.steps import StepTimings, mark


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    mark("before the task")
    await asyncio.create_task(asyncio.to_thread(mark, "in a worker thread of a task"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _call(path: str) -> None:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(_message: object) -> None:
        return None

    await StepTimings(_app)({"type": "http", "method": "POST", "path": path}, receive, send)  # type: ignore[arg-type]


def test_exec_requests_log_their_steps_in_order(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cloche.steps"):
        asyncio.run(_call("/v1/sandboxes/sb_1/exec"))
        asyncio.run(_call("/v1/sandboxes/sb_1/files/x"))
    records = [r for r in caplog.records if r.getMessage() == "exec steps"]
    assert len(records) == 1  # only the exec request is timed
    steps = records[0].steps  # type: ignore[attr-defined]
    names = [name for name, _ in steps]
    assert names == [
        "request received",
        "before the task",
        "in a worker thread of a task",
        "response started",
        "response sent",
    ]
    times = [ms for _, ms in steps]
    assert times == sorted(times) and times[0] == 0.0
