"""The client side of the node agent protocol: an agent in another process or on another host, over HTTP/JSON.

Errors keep their codes: an agent's ``{"error": {"code", "message"}}`` is raised here as the same
``ClocheError`` class. An agent that does not answer is ``AgentUnavailable``, naming the node and saying that
its sandboxes come back with it; the other agents' sandboxes are untouched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, BinaryIO, NoReturn

import httpx

from cloche.agent.protocol import PROTOCOL_VERSION
from cloche.errors import ALL_ERRORS, AgentUnavailable, ClocheError
from cloche.models import CreateSandbox, ExecRequest, ExecResult, FileList, FilesWritten, Sandbox
from cloche.service.deps import Progress
from cloche.service.execute import EventSink

PREFIX = f"/agent/v{PROTOCOL_VERSION}"
TENANT_HEADER = "x-cloche-tenant"
CONNECT_TIMEOUT_SECONDS = 5.0
ERRORS_BY_CODE: dict[str, type[ClocheError]] = {cls.code: cls for cls in ALL_ERRORS}


def raise_error(body: dict[str, Any], status: int) -> NoReturn:
    """Raise the ``ClocheError`` an agent answered with (an unknown code keeps the base class)."""
    error = body.get("error") if isinstance(body.get("error"), dict) else None
    if error is None:
        raise ClocheError(f"the node agent answered {status} without an error body")
    raise ERRORS_BY_CODE.get(str(error.get("code")), ClocheError)(str(error.get("message", "")))


class RemoteAgent:
    def __init__(self, name: str, url: str, token: str | None = None) -> None:
        self.name = name
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # No read timeout: an exec lasts as long as its own wall clock, which the agent enforces.
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS)
        self._http = httpx.AsyncClient(base_url=self.url + PREFIX, headers=headers, timeout=timeout)
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
            response = await self._http.request(method, path, headers={TENANT_HEADER: tenant}, **kwargs)
        if response.status_code >= 400:
            raise_error(_json(response), response.status_code)
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

    async def execute(
        self,
        tenant: str,
        sandbox_id: str,
        request: ExecRequest,
        on_output: EventSink | None = None,
        on_progress: Progress | None = None,
    ) -> ExecResult:
        """One JSON event per line (``output``, ``install``, then ``done`` or ``error``); closing the stream
        (this task cancelled) makes the agent kill the run."""
        body = request.model_dump(mode="json", exclude_unset=True)
        async with self._reach():
            await self._check()
            url = f"/sandboxes/{sandbox_id}/exec"
            async with self._http.stream("POST", url, json=body, headers={TENANT_HEADER: tenant}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_error(_json(response), response.status_code)
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    kind = event.get("event")
                    if kind == "output" and on_output is not None:
                        await on_output(event["stream"], event["data"])
                    elif kind == "install" and on_progress is not None:
                        await on_progress(event["data"])
                    elif kind == "done":
                        return ExecResult.model_validate(event["result"])
                    elif kind == "error":
                        raise_error(event, response.status_code)
        raise self._unavailable(ConnectionError("the exec stream ended without a result"))

    async def close(self) -> None:
        await self._http.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
