"""The agent's exec stream ends with an event the API server can report, whatever stopped the exec."""

from __future__ import annotations

import asyncio

import pytest

from cloche.agent.wire import receive_exec, send_exec
from cloche.errors import ClocheError, NotFound
from cloche.models import ExecRequest, ExecResult
from cloche.service.exec_call import ExecCall


def _call() -> ExecCall:
    return ExecCall(tenant="t", sandbox_id="sbx_1", request=ExecRequest(command="true"))


def _relay(failure: Exception) -> list[str]:
    """What the agent writes for an exec that raises ``failure``, as the client reads it, line by line."""
    lines: list[bytes] = []

    async def emit(data: bytes) -> None:
        lines.append(data)

    async def execute(call: ExecCall) -> ExecResult:
        raise failure

    asyncio.run(send_exec(execute, _call(), emit))
    return [line.decode().strip() for line in lines]


def test_a_cloche_error_keeps_its_code() -> None:
    (line,) = _relay(NotFound("no such sandbox"))
    with pytest.raises(NotFound, match="no such sandbox"):
        asyncio.run(receive_exec(line, _call(), 200))


def test_an_unexpected_failure_is_reported_not_cut_short() -> None:
    (line,) = _relay(OSError("AF_UNIX path too long"))
    with pytest.raises(ClocheError) as caught:
        asyncio.run(receive_exec(line, _call(), 200))
    assert caught.value.code == "internal"
    assert "OSError" in str(caught.value) and "log" in str(caught.value)
    assert "AF_UNIX" not in str(caught.value)  # the detail stays in the node's log
