"""Synchronous Python client for the cloche HTTP API.

with Client() as cloche:                      # CLOCHE_URL, CLOCHE_API_KEY
    box = cloche.create(language="python")
    box.write("main.py", "print('hi')")
    print(box.exec(filename="main.py").output)
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from cloche.models import ExecResult, FileEntry, FileList, FilesWritten, RunList, RunRecord, Sandbox, SecretInfo
from cloche.models_code import CodeResult, Context
from cloche.sdk import calls, process_calls
from cloche.sdk.calls import DEFAULT_TIMEOUT, DEFAULT_URL, Call, CodeEvent, E, Endpoint, EventDecoder, ExecEvent
from cloche.sdk.errors import ClocheAPIError, raise_for
from cloche.sdk.processes import ProcessHandle

__all__ = ["DEFAULT_URL", "Client", "ClocheAPIError", "CodeEvent", "Contexts", "ExecEvent", "SandboxHandle"]

T = TypeVar("T")


class Client(Endpoint[httpx.Client]):
    """Blocking client; ``AsyncClient`` is the same API for asyncio. Errors raise ``ClocheAPIError`` subclasses."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._http = httpx.Client(**calls.http_options(url, api_key, timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call[T]) -> T:
        return call.result(self._http.request(call.method, call.path, **call.options))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return raise_for(self._http.request(method, path, **kwargs))

    def create(self, language: str | None = None, **options: Any) -> SandboxHandle:
        info = self.send(calls.create(language, options))
        return SandboxHandle(self, info.id, info)

    def sandbox(self, sandbox_id: str) -> SandboxHandle:
        return SandboxHandle(self, sandbox_id)

    def list(self) -> list[Sandbox]:
        return self.send(calls.list_sandboxes())

    def set_secret(self, name: str, value: str, hosts: tuple[str, ...] = ()) -> SecretInfo:
        """Create or replace a secret; sandboxes and execs name it in ``secrets=[...]``."""
        return self.send(calls.put_secret(name, value, hosts))

    def secrets(self) -> builtins.list[SecretInfo]:
        return self.send(calls.list_secrets())

    def delete_secret(self, name: str, missing_ok: bool = True) -> None:
        self.send(calls.delete_secret(name, missing_ok))

    def events(self, call: Call[None], decoder: EventDecoder[E] | None = None) -> Iterator[E]:
        """Send a streaming call and yield its decoded events (an exec's unless ``decoder`` says otherwise)."""
        with self._http.stream(call.method, call.path, **call.options) as response:
            if not response.is_success:
                response.read()
                raise_for(response)
            decoder = decoder or EventDecoder()
            for line in response.iter_lines():
                if (event := decoder.feed(line)) is not None:
                    yield event


class SandboxHandle:
    """Operations on one sandbox; also a context manager that deletes it on exit."""

    def __init__(self, client: Client, sandbox_id: str, info: Sandbox | None = None) -> None:
        self.client, self.id, self.info = client, sandbox_id, info
        self.contexts = Contexts(client, sandbox_id)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.delete()

    def refresh(self) -> Sandbox:
        self.info = self.client.send(calls.get(self.id))
        return self.info

    def delete(self, missing_ok: bool = True) -> None:
        self.client.send(calls.delete(self.id, missing_ok))

    def write(self, path: str, content: str | bytes) -> FileEntry:
        return self.client.send(calls.write(self.id, path, content))

    def upload(self, *paths: str | Path, folder: str = "") -> FilesWritten:
        return self.client.send(calls.upload(self.id, paths, folder))

    def upload_archive(self, archive: str | Path | bytes, folder: str = "") -> FilesWritten:
        return self.client.send(calls.upload_archive(self.id, archive, folder))

    def read(self, path: str) -> bytes:
        return self.client.send(calls.read(self.id, path))

    def files(self, path: str = "") -> FileList:
        return self.client.send(calls.files(self.id, path))

    def remove(self, path: str) -> None:
        self.client.send(calls.remove(self.id, path))

    def exec(self, filename: str | None = None, command: str | None = None, **options: Any) -> ExecResult:
        return self.client.send(calls.exec_(self.id, filename, command, options))

    def stream(self, filename: str | None = None, command: str | None = None, **options: Any) -> Iterator[ExecEvent]:
        """Yield ``install`` and output events as they happen, then one ``done`` event with the result."""
        return self.client.events(calls.exec_stream(self.id, filename, command, options))

    def run_code(self, code: str, context: str | Context | None = None, timeout: float | None = None) -> CodeResult:
        """Run a cell in a code context (the sandbox's default one unless ``context``): variables persist."""
        return self.client.send(calls.run_code(self.id, code, context, timeout))

    def stream_code(
        self, code: str, context: str | Context | None = None, timeout: float | None = None
    ) -> Iterator[CodeEvent]:
        """Yield a cell's output and results as they happen, then one ``done`` event with its result."""
        return self.client.events(calls.code_stream(self.id, code, context, timeout), EventDecoder.code())

    def runs(self, limit: int = 100) -> RunList:
        return self.client.send(calls.runs(self.id, limit))

    def run(self, run_id: str) -> RunRecord:
        return self.client.send(calls.run(self.id, run_id))

    def sbom(self, run_id: str) -> dict[str, Any]:
        """The CycloneDX SBOM of a run (what its environment held)."""
        return self.client.send(calls.sbom(self.id, run_id))

    def diff(self, run_from: str, run_to: str) -> dict[str, Any]:
        """Dependency changes between two runs: added, removed, changed, license changes."""
        return self.client.send(calls.diff(self.id, run_from, run_to))

    def start(self, command: str | None = None, filename: str | None = None, **options: Any) -> ProcessHandle:
        """Start ``command`` (or ``filename``) as a background process and return at once; ``timeout_seconds`` is
        its lifetime. Its dependencies are installed first, as for ``exec``."""
        info = self.client.send(process_calls.start(self.id, filename, command, options))
        return ProcessHandle(self.client, self.id, info)

    def processes(self) -> builtins.list[ProcessHandle]:
        """The sandbox's background processes (running, and ended ones not stopped yet), oldest first."""
        found = self.client.send(process_calls.processes(self.id))
        return [ProcessHandle(self.client, self.id, info) for info in found]

    def process(self, process_id: str) -> ProcessHandle:
        return ProcessHandle(self.client, self.id, self.client.send(process_calls.process(self.id, process_id)))

    def url(self, port: int, path: str = "") -> str:
        """Where ``port`` of this sandbox answers through the server (send the API key with each request)."""
        return process_calls.port_url(self.client.url, self.id, port, path)


class Contexts:
    """A sandbox's code contexts (``box.contexts``): each a kernel of its own with its own variables."""

    def __init__(self, client: Client, sandbox_id: str) -> None:
        self.client, self.sandbox_id = client, sandbox_id

    def create(self) -> Context:
        return self.client.send(calls.create_context(self.sandbox_id))

    def list(self) -> builtins.list[Context]:
        return self.client.send(calls.list_contexts(self.sandbox_id))

    def get(self, context: str | Context) -> Context:
        return self.client.send(calls.get_context(self.sandbox_id, _id(context)))

    def restart(self, context: str | Context) -> Context:
        """A fresh kernel: the context's variables are gone."""
        return self.client.send(calls.restart_context(self.sandbox_id, _id(context)))

    def delete(self, context: str | Context, missing_ok: bool = True) -> None:
        self.client.send(calls.delete_context(self.sandbox_id, _id(context), missing_ok))


def _id(context: str | Context) -> str:
    return context.id if isinstance(context, Context) else context
