"""The agent protocol's client on its own: configuration, errors that keep their codes, an agent that is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from cloche.agent.remote import RemoteAgent
from cloche.agent.wire import raise_error, receive_exec, send_exec
from cloche.errors import AgentUnavailable, ClocheError, SandboxNotFound, TooLarge
from cloche.jail.runner import StreamName
from cloche.models import ExecRequest, ExecResult
from cloche.service.exec_call import ExecCall
from cloche.settings import Settings
from conftest import free_port


def test_agents_setting_names_each_node() -> None:
    settings = Settings(agents=" a1=http://10.0.0.5:8500 , a2=https://h2:9000/ ")
    assert settings.agent_urls() == {"a1": "http://10.0.0.5:8500", "a2": "https://h2:9000/"}
    assert Settings().agent_urls() == {}
    for bad in ("http://no-name:1", "a1=ftp://x", "=http://x"):
        with pytest.raises(ValueError, match="CLOCHE_AGENTS entry"):
            Settings(agents=bad).agent_urls()


def test_an_agents_error_is_raised_as_the_same_class() -> None:
    with pytest.raises(SandboxNotFound, match="no sandbox"):
        raise_error({"error": {"code": "sandbox_not_found", "message": "no sandbox 'sb_x'"}}, 404)
    with pytest.raises(TooLarge):
        raise_error({"error": {"code": "too_large", "message": "quota"}}, 413)
    with pytest.raises(ClocheError) as unknown:
        raise_error({"error": {"code": "from_a_newer_agent", "message": "m"}}, 500)
    assert type(unknown.value) is ClocheError and unknown.value.message == "m"


def test_an_agent_that_does_not_answer_is_agent_unavailable_naming_it() -> None:
    async def scenario() -> None:
        agent = RemoteAgent("a9", f"http://127.0.0.1:{free_port()}", token="t")
        try:
            with pytest.raises(AgentUnavailable, match=r"'a9' \(http://127\.0\.0\.1:\d+\).*does not answer"):
                await agent.read("default", "sb_x", "main.py")
            with pytest.raises(AgentUnavailable, match="'a9'"):
                await agent.execute(ExecCall("default", "sb_x", ExecRequest(command="true")))
        finally:
            await agent.close()

    asyncio.run(scenario())


def test_an_exec_stream_reaches_the_callers_sinks_in_order_then_its_result_or_error() -> None:
    """What the agent's server writes for a call, its client reads back into the same call's sinks."""
    seen: list[tuple[str, Any]] = []

    async def output(stream: StreamName, text: str) -> None:
        seen.append((stream, text))

    async def progress(event: Mapping[str, Any]) -> None:
        seen.append(("install", dict(event)))

    async def execute(call: ExecCall) -> ExecResult:
        assert call.tenant == "t1" and call.sandbox_id == "sb_1" and call.request.command == "echo hi"
        assert call.on_progress is not None and call.on_output is not None
        await call.on_progress({"phase": "resolve"})
        await call.on_output("stdout", "hi\n")
        await call.on_output("stderr", "warn\n")
        if call.request.stdin == "fail":
            raise TooLarge("quota")
        done = {"output": "hi\n", "stdout": "hi\n", "stderr": "warn\n", "duration_ms": 1, "truncated": False}
        return ExecResult(status="succeeded", exit_code=0, run_id="run_1", **done)

    async def roundtrip(request: ExecRequest) -> ExecResult | None:
        lines: list[bytes] = []

        async def emit(line: bytes) -> None:
            lines.append(line)

        await send_exec(execute, ExecCall("t1", "sb_1", request), emit)
        call = ExecCall("t1", "sb_1", request, output, progress)
        results = [await receive_exec(line.decode().rstrip("\n"), call, 200) for line in lines]
        assert all(r is None for r in results[:-1])
        return results[-1]

    result = asyncio.run(roundtrip(ExecRequest(command="echo hi")))
    assert result is not None and result.status == "succeeded" and result.run_id == "run_1"
    assert seen == [("install", {"phase": "resolve"}), ("stdout", "hi\n"), ("stderr", "warn\n")]
    seen.clear()
    with pytest.raises(TooLarge, match="quota"):
        asyncio.run(roundtrip(ExecRequest(command="echo hi", stdin="fail")))
    assert len(seen) == 3
