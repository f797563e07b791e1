"""``cloche mcp`` as an agent's client sees it: a real MCP session over stdio against a real cloche server."""

from __future__ import annotations

import base64
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, ImageContent, TextContent

from conftest import ServerProcess
from mcp import ClientSession

TOOLS = {
    "create_sandbox",
    "write_file",
    "read_file",
    "list_files",
    "exec_code",
    "run_code",
    "get_sbom",
    "delete_sandbox",
}
PROGRAM = "import json, sys\nprint(json.dumps({'ok': True}))\nprint('to stderr', file=sys.stderr)\n"


@contextlib.asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", "from cloche.cli.main import main; main()", "mcp"],
        env={"CLOCHE_URL": url},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def run(server: ServerProcess | str, scenario: Callable[[ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        async with mcp_session(server if isinstance(server, str) else server.url) as session:
            await scenario(session)

    anyio.run(main)


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


def text(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def tool_error(result: CallToolResult) -> str:
    """The error a tool reported, without the SDK's 'Error executing tool <name>: ' prefix."""
    assert result.is_error
    return text(result).split(": ", 1)[1]


def test_tools_are_listed_with_guidance(server: ServerProcess) -> None:
    async def scenario(session: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        assert "persist" in (tools["create_sandbox"].description or "")
        assert "install" in (tools["exec_code"].description or "")
        assert {"sandbox_id", "filename", "command"} <= set(tools["exec_code"].input_schema["properties"])
        assert "ctx" not in tools["exec_code"].input_schema["properties"]

    run(server, scenario)


def test_create_write_exec_read_sbom_delete(server: ServerProcess) -> None:
    async def scenario(session: ClientSession) -> None:
        sandbox = await call(session, "create_sandbox", language="python")
        box = sandbox["sandbox_id"]
        assert box.startswith("sb_") and sandbox["language"] == "python"
        written = await call(session, "write_file", sandbox_id=box, path="app/main.py", content=PROGRAM)
        assert written == {"path": "app/main.py", "type": "file", "size": len(PROGRAM)}
        listed = await call(session, "list_files", sandbox_id=box, path="app")
        assert [f["path"] for f in listed["files"]] == ["app/main.py"]

        ran = await call(session, "exec_code", sandbox_id=box, filename="app/main.py")
        assert (ran["status"], ran["exit_code"]) == ("succeeded", 0)
        assert ran["output"] == '{"ok": true}\nto stderr\n'
        assert ran["run_id"].startswith("run_")
        assert ran["installed"] == [] and ran["unresolved_imports"] == []
        failed = await call(session, "exec_code", sandbox_id=box, command="echo out > result.txt; exit 3")
        assert (failed["status"], failed["exit_code"]) == ("failed", 3)

        read = await call(session, "read_file", sandbox_id=box, path="result.txt")  # files persist across runs
        assert (read["content"], read["encoding"]) == ("out\n", "utf-8")
        sbom = await call(session, "get_sbom", sandbox_id=box, run_id=ran["run_id"])
        assert sbom["bomFormat"] == "CycloneDX"

        deleted = await session.call_tool("delete_sandbox", {"sandbox_id": box})
        assert not deleted.is_error and box in text(deleted)
        gone = await session.call_tool("exec_code", {"sandbox_id": box, "command": "true"})
        assert tool_error(gone).startswith("sandbox_not_found: ")

    run(server, scenario)


def test_server_errors_become_tool_errors(server: ServerProcess) -> None:
    async def scenario(session: ClientSession) -> None:
        box = (await call(session, "create_sandbox"))["sandbox_id"]
        try:
            missing = await session.call_tool("read_file", {"sandbox_id": box, "path": "nope.py"})
            assert tool_error(missing).startswith("file_not_found: ")
            escape = await session.call_tool("write_file", {"sandbox_id": box, "path": "../x.py", "content": ""})
            assert tool_error(escape).startswith("invalid_path: ")
            both = await session.call_tool("exec_code", {"sandbox_id": box, "filename": "a.py", "command": "true"})
            assert tool_error(both).startswith("validation_error: ") and "exactly one" in text(both)
        finally:
            await call(session, "delete_sandbox", sandbox_id=box)

    run(server, scenario)


def test_unreachable_server_is_a_tool_error() -> None:
    async def scenario(session: ClientSession) -> None:
        result = await session.call_tool("create_sandbox", {})
        assert tool_error(result).startswith("cloche_unreachable: cannot reach the cloche server at http://127.0.0.1:9")

    run("http://127.0.0.1:9", scenario)  # the discard port: nothing listens


def test_imports_install_themselves(offline_server: ServerProcess) -> None:
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def scenario(session: ClientSession) -> None:
        box = (await call(session, "create_sandbox", language="python"))["sandbox_id"]
        await call(
            session, "write_file", sandbox_id=box, path="main.py", content="import six\nprint(six.__version__)\n"
        )
        result = await session.call_tool(
            "exec_code", {"sandbox_id": box, "filename": "main.py"}, progress_callback=on_progress
        )
        assert not result.is_error, text(result)
        ran = result.structured_content
        assert ran is not None
        assert ran["status"] == "succeeded", ran["output"]
        assert ran["installed"] == ["six==1.16.0"]
        assert ran["dependency_source"] == "scan"
        assert ran["output"].endswith("1.16.0\n")
        again = await call(session, "exec_code", sandbox_id=box, filename="main.py")
        assert again["installed"] == [] and again["output"] == "1.16.0\n"  # installed once, reused after
        sbom = await call(session, "get_sbom", sandbox_id=box, run_id=ran["run_id"])
        assert [(c["name"], c["version"]) for c in sbom["components"]] == [("six", "1.16.0")]
        await call(session, "delete_sandbox", sandbox_id=box)

    run(offline_server, scenario)
    # "installing six==1.16.0" comes between them unless an earlier test already built this environment.
    assert progress[0] == "resolving six" and progress[-1] == "installed six", progress


@pytest.mark.network
@pytest.mark.timeout(1500)  # the kernel tools and matplotlib from PyPI
def test_run_code_keeps_state_and_returns_a_plot_as_an_image(server: ServerProcess) -> None:
    async def scenario(session: ClientSession) -> None:
        box = (await call(session, "create_sandbox"))["sandbox_id"]
        try:
            first = await call(session, "run_code", sandbox_id=box, code="x = 41")
            assert first["status"] == "ok" and first["results"] == []
            await call(session, "run_code", sandbox_id=box, code="x += 1", context_id=first["context_id"])
            shown = await call(session, "run_code", sandbox_id=box, code="x")
            assert [r["text"] for r in shown["results"]] == ["42"]

            plot = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()"
            drawn = await session.call_tool("run_code", {"sandbox_id": box, "code": plot, "timeout_seconds": 600})
            assert not drawn.is_error, text(drawn)
            assert drawn.structured_content is not None and "matplotlib" in str(drawn.structured_content["installed"])
            images = [block for block in drawn.content if isinstance(block, ImageContent)]
            assert len(images) == 1 and images[0].mime_type == "image/png"
            assert base64.b64decode(images[0].data)[:8] == b"\x89PNG\r\n\x1a\n"
            (figure,) = [r for r in drawn.structured_content["results"] if r["image"] is not None]
            assert figure["image"] == 0 and "png" in figure["formats"]

            failed = await call(session, "run_code", sandbox_id=box, code="undefined_name")
            assert failed["status"] == "error" and failed["error"]["name"] == "NameError"
            assert "undefined_name" in failed["error"]["traceback"]
        finally:
            await call(session, "delete_sandbox", sandbox_id=box)

    run(server, scenario)
