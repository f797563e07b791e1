"""The client side of the node agent protocol: an agent in another process or on another host, over HTTP/JSON.

Errors keep their codes: an agent's ``{"error": {"code", "message"}}`` is raised here as the same
``ClocheError`` class. An agent that does not answer is ``AgentUnavailable``, naming the node and saying that
its sandboxes come back with it; the other agents' sandboxes are untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, BinaryIO

import httpx

from cloche.agent import wire
from cloche.agent.protocol import PROTOCOL_VERSION
from cloche.errors import AgentUnavailable
from cloche.models import CreateSandbox, ExecResult, FileList, FilesWritten, Sandbox
from cloche.service.exec_call import ExecCall

CONNECT_TIMEOUT_SECONDS = 5.0


class RemoteAgent:
    def __init__(self, name: str, url: str, token: str | None = None) -> None:
        self.name = name
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # No read timeout: an exec lasts as long as its own wall clock, which the agent enforces.
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS)
        self._http = httpx.AsyncClient(base_url=self.url + wire.PREFIX, headers=headers, timeout=timeout)
        self._checked = False

    def _unavailable(self, exc: Exception) -> AgentUnavailable:
        return AgentUnavailable(
            f"the node agent {self.name!r} ({self.url}) holding this sandbox does not answer ({type(exc).__name__}); "
            "its sandboxes are back when it is, sandboxes on other nodes are not affected"
        )

    @asynccontextmanager
    async def _reach(self) -> AsyncIterator[None]:
        try:
            yield
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectTimeout) as exc:
            self._checked = False  # a restarted agent is asked again who it is
            raise self._unavailable(exc) from exc

    async def _check(self) -> None:
        """Once per connection: the agent speaks this protocol and is the node its name says."""
        if self._checked:
            return
        response = await self._http.get("/info")
        info = response.json() if response.status_code == 200 else {}
        if info.get("protocol") != PROTOCOL_VERSION or info.get("name") != self.name:
            raise AgentUnavailable(
                f"the agent at {self.url} is {info.get('name')!r} speaking protocol {info.get('protocol')!r}; "
                f"CLOCHE_AGENTS expects {self.name!r} speaking {PROTOCOL_VERSION}"
            )
        self._checked = True

    async def _call(self, method: str, path: str, tenant: str, **kwargs: Any) -> httpx.Response:
        async with self._reach():
            await self._check()
            response = await self._http.request(method, path, headers={wire.TENANT_HEADER: tenant}, **kwargs)
        if response.status_code >= 400:
            wire.raise_error(_json(response), response.status_code)
        return response

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        body = request.model_dump(mode="json", exclude_unset=True)
        return Sandbox.model_validate((await self._call("POST", "/sandboxes", tenant, json=body)).json())

    async def delete(self, tenant: str, sandbox_id: str) -> None:
        await self._call("DELETE", f"/sandboxes/{sandbox_id}", tenant)

    async def upload(
        self, tenant: str, sandbox_id: str, files: list[tuple[str, BinaryIO]], folder: str
    ) -> FilesWritten:
        parts = [("file", (name, data.read())) for name, data in files]
        response = await self._call(
            "POST", f"/sandboxes/{sandbox_id}/files", tenant, files=parts, data={"path": folder}
        )
        return FilesWritten.model_validate(response.json())

    async def extract(self, tenant: str, sandbox_id: str, data: BinaryIO, folder: str) -> FilesWritten:
        parts = [("file", ("archive", data.read()))]
        response = await self._call(
            "POST", f"/sandboxes/{sandbox_id}/upload", tenant, files=parts, data={"path": folder}
        )
        return FilesWritten.model_validate(response.json())

    async def read(self, tenant: str, sandbox_id: str, path: str) -> bytes:
        return (await self._call("GET", f"/sandboxes/{sandbox_id}/file", tenant, params={"path": path})).content

    async def listing(self, tenant: str, sandbox_id: str, path: str) -> FileList:
        response = await self._call("GET", f"/sandboxes/{sandbox_id}/files", tenant, params={"path": path})
        return FileList.model_validate(response.json())

    async def delete_file(self, tenant: str, sandbox_id: str, path: str) -> None:
        await self._call("DELETE", f"/sandboxes/{sandbox_id}/file", tenant, params={"path": path})

    async def execute(self, call: ExecCall) -> ExecResult:
        """The agent's event stream, passed to the call's sinks; closing it (this task cancelled) makes the agent
        kill the run."""
        headers = {wire.TENANT_HEADER: call.tenant}
        async with self._reach():
            await self._check()
            path, body = wire.exec_path(call), wire.exec_body(call)
            async with self._http.stream("POST", path, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    wire.raise_error(_json(response), response.status_code)
                async for line in response.aiter_lines():
                    result = await wire.receive_exec(line, call, response.status_code)
                    if result is not None:
                        return result
        raise self._unavailable(ConnectionError("the exec stream ended without a result"))

    async def close(self) -> None:
        await self._http.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
