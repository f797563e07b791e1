"""The agent protocol's client on its own: configuration, errors that keep their codes, an agent that is gone."""

from __future__ import annotations

import asyncio

import pytest

from cloche.agent.remote import RemoteAgent, raise_error
from cloche.errors import AgentUnavailable, ClocheError, SandboxNotFound, TooLarge
from cloche.models import ExecRequest
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
                await agent.execute("default", "sb_x", ExecRequest(command="true"))
        finally:
            await agent.close()

    asyncio.run(scenario())
