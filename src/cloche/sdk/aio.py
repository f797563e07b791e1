"""Asynchronous Python client for the cloche HTTP API: ``Client``'s API, awaited.

async with AsyncClient() as cloche:           # CLOCHE_URL, CLOCHE_API_KEY
    async with await cloche.create(language="python") as box:
        await box.write("main.py", "print('hi')")
        print((await box.exec(filename="main.py")).output)
        async for event in box.stream(filename="main.py"):
            print(event.kind, event.text or event.data or event.result)

Requests, paths and answer parsing are shared with the blocking client (``cloche.sdk.calls``).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from cloche.models import ExecResult, FileEntry, FileList, FilesWritten, RunList, RunRecord, Sandbox, SecretInfo
from cloche.models_code import CodeResult, Context
from cloche.sdk import calls, process_calls
from cloche.sdk.calls import DEFAULT_TIMEOUT, Call, CodeEvent, E, Endpoint, EventDecoder, ExecEvent
from cloche.sdk.errors import raise_for
from cloche.sdk.processes import AsyncProcessHandle

T = TypeVar("T")


class AsyncClient(Endpoint[httpx.AsyncClient]):
    """asyncio client; every method of ``Client`` exists here as a coroutine (``stream`` as an async iterator)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._http = httpx.AsyncClient(**calls.http_options(url, api_key, timeout))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call[T]) -> T:
        return call.result(await self._http.request(call.method, call.path, **call.options))

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return raise_for(await self._http.request(method, path, **kwargs))

    async def create(self, language: str | None = None, **options: Any) -> AsyncSandboxHandle:
        info = await self.send(calls.create(language, options))
        return AsyncSandboxHandle(self, info.id, info)

    def sandbox(self, sandbox_id: str) -> AsyncSandboxHandle:
        return AsyncSandboxHandle(self, sandbox_id)

    async def list(self) -> list[Sandbox]:
        return await self.send(calls.list_sandboxes())

    async def set_secret(self, name: str, value: str, hosts: tuple[str, ...] = ()) -> SecretInfo:
        """Create or replace a secret; sandboxes and execs name it in ``secrets=[...]``."""
        return await self.send(calls.put_secret(name, value, hosts))

    async def secrets(self) -> builtins.list[SecretInfo]:
        return await self.send(calls.list_secrets())

    async def delete_secret(self, name: str, missing_ok: bool = True) -> None:
        await self.send(calls.delete_secret(name, missing_ok))

    async def events(self, call: Call[None], decoder: EventDecoder[E] | None = None) -> AsyncIterator[E]:
        """Send a streaming call and yield its decoded events (an exec's unless ``decoder`` says otherwise)."""
        async with self._http.stream(call.method, call.path, **call.options) as response:
            if not response.is_success:
                await response.aread()
                raise_for(response)
            decoder = decoder or EventDecoder()
            async for line in response.aiter_lines():
                if (event := decoder.feed(line)) is not None:
                    yield event


class AsyncSandboxHandle:
    """Operations on one sandbox; ``async with`` deletes it on exit."""

    def __init__(self, client: AsyncClient, sandbox_id: str, info: Sandbox | None = None) -> None:
        self.client, self.id, self.info = client, sandbox_id, info
        self.contexts = AsyncContexts(client, sandbox_id)

    async def __aenter__(self) -> AsyncSandboxHandle:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.delete()

    async def refresh(self) -> Sandbox:
        self.info = await self.client.send(calls.get(self.id))
        return self.info

    async def delete(self, missing_ok: bool = True) -> None:
        await self.client.send(calls.delete(self.id, missing_ok))

    async def write(self, path: str, content: str | bytes) -> FileEntry:
        return await self.client.send(calls.write(self.id, path, content))

    async def upload(self, *paths: str | Path, folder: str = "") -> FilesWritten:
        return await self.client.send(calls.upload(self.id, paths, folder))

    async def upload_archive(self, archive: str | Path | bytes, folder: str = "") -> FilesWritten:
        return await self.client.send(calls.upload_archive(self.id, archive, folder))

    async def read(self, path: str) -> bytes:
        return await self.client.send(calls.read(self.id, path))

    async def files(self, path: str = "") -> FileList:
        return await self.client.send(calls.files(self.id, path))

    async def remove(self, path: str) -> None:
        await self.client.send(calls.remove(self.id, path))

    async def exec(self, filename: str | None = None, command: str | None = None, **options: Any) -> ExecResult:
        return await self.client.send(calls.exec_(self.id, filename, command, options))

    def stream(
        self, filename: str | None = None, command: str | None = None, **options: Any
    ) -> AsyncIterator[ExecEvent]:
        """Yield ``install`` and output events as they happen, then one ``done`` event with the result."""
        return self.client.events(calls.exec_stream(self.id, filename, command, options))

    async def run_code(
        self, code: str, context: str | Context | None = None, timeout: float | None = None
    ) -> CodeResult:
        """Run a cell in a code context (the sandbox's default one unless ``context``): variables persist."""
        return await self.client.send(calls.run_code(self.id, code, context, timeout))

    def stream_code(
        self, code: str, context: str | Context | None = None, timeout: float | None = None
    ) -> AsyncIterator[CodeEvent]:
        """Yield a cell's output and results as they happen, then one ``done`` event with its result."""
        return self.client.events(calls.code_stream(self.id, code, context, timeout), EventDecoder.code())

    async def runs(self, limit: int = 100) -> RunList:
        return await self.client.send(calls.runs(self.id, limit))

    async def run(self, run_id: str) -> RunRecord:
        return await self.client.send(calls.run(self.id, run_id))

    async def sbom(self, run_id: str) -> dict[str, Any]:
        """The CycloneDX SBOM of a run (what its environment held)."""
        return await self.client.send(calls.sbom(self.id, run_id))

    async def diff(self, run_from: str, run_to: str) -> dict[str, Any]:
        """Dependency changes between two runs: added, removed, changed, license changes."""
        return await self.client.send(calls.diff(self.id, run_from, run_to))

    async def start(
        self, command: str | None = None, filename: str | None = None, **options: Any
    ) -> AsyncProcessHandle:
        """Start ``command`` (or ``filename``) as a background process and return at once; ``timeout_seconds`` is
        its lifetime. Its dependencies are installed first, as for ``exec``."""
        info = await self.client.send(process_calls.start(self.id, filename, command, options))
        return AsyncProcessHandle(self.client, self.id, info)

    async def processes(self) -> builtins.list[AsyncProcessHandle]:
        """The sandbox's background processes (running, and ended ones not stopped yet), oldest first."""
        found = await self.client.send(process_calls.processes(self.id))
        return [AsyncProcessHandle(self.client, self.id, info) for info in found]

    async def process(self, process_id: str) -> AsyncProcessHandle:
        return AsyncProcessHandle(
            self.client, self.id, await self.client.send(process_calls.process(self.id, process_id))
        )

    def url(self, port: int, path: str = "") -> str:
        """Where ``port`` of this sandbox answers through the server (send the API key with each request)."""
        return process_calls.port_url(self.client.url, self.id, port, path)


class AsyncContexts:
    """A sandbox's code contexts (``box.contexts``): each a kernel of its own with its own variables."""

    def __init__(self, client: AsyncClient, sandbox_id: str) -> None:
        self.client, self.sandbox_id = client, sandbox_id

    async def create(self) -> Context:
        return await self.client.send(calls.create_context(self.sandbox_id))

    async def list(self) -> builtins.list[Context]:
        return await self.client.send(calls.list_contexts(self.sandbox_id))

    async def get(self, context: str | Context) -> Context:
        return await self.client.send(calls.get_context(self.sandbox_id, _id(context)))

    async def restart(self, context: str | Context) -> Context:
        """A fresh kernel: the context's variables are gone."""
        return await self.client.send(calls.restart_context(self.sandbox_id, _id(context)))

    async def delete(self, context: str | Context, missing_ok: bool = True) -> None:
        await self.client.send(calls.delete_context(self.sandbox_id, _id(context), missing_ok))


def _id(context: str | Context) -> str:
    return context.id if isinstance(context, Context) else context
