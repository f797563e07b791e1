"""The SDK's background processes against a real server: start, list, url, logs, follow, stop (sync and async)."""

from __future__ import annotations

import asyncio
import time

import httpx

from cloche import AsyncClient, Client
from conftest import ServerProcess

SERVE = "python3 -m http.server 8000"


def wait_for(url: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while (answer := httpx.get(url, timeout=30)).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    return answer


def test_start_url_logs_follow_and_stop(client: Client) -> None:
    with client.create() as box:
        box.write("index.html", "<h1>from the sandbox</h1>")
        server = box.start(SERVE)
        assert server.id is not None and server.info.status == "running"
        assert box.url(8000) == f"{client.url}/v1/sandboxes/{box.id}/ports/8000/"
        page = wait_for(box.url(8000, "index.html"))
        assert page.status_code == 200 and page.text == "<h1>from the sandbox</h1>"
        assert [p.id for p in box.processes()] == [server.id]
        assert server.refresh().ports == [8000]
        assert "GET /index.html" in server.logs().output  # http.server logs each request on stderr

        counter = box.start(command="for i in 1 2 3; do echo $i; done")
        printed = "".join(event.text for event in counter.follow())
        assert printed == "1\n2\n3\n" and counter.info.status == "succeeded" and counter.info.exit_code == 0
        assert server.stop().status == "killed"
        assert counter.stop().status == "succeeded"
        assert box.processes() == []


def test_the_async_client_has_the_same_processes(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as cloche, await cloche.create() as box:
            process = await box.start("echo started; sleep 600")
            assert (await box.process(process.id or "")).info.status == "running"
            assert [p.id for p in await box.processes()] == [process.id]
            deadline = time.monotonic() + 30
            while "started" not in (await process.logs()).output:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            assert (await process.stop()).status == "killed"
            assert box.url(3000, "/a") == f"{server.url}/v1/sandboxes/{box.id}/ports/3000/a"

    asyncio.run(scenario())
