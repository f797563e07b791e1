"""Handles on background processes, for ``SandboxHandle.start`` (blocking) and ``AsyncSandboxHandle.start``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from cloche.process_models import ProcessInfo, ProcessLogs
from cloche.sdk import process_calls
from cloche.sdk.calls import EventDecoder, ExecEvent

if TYPE_CHECKING:
    from cloche.sdk.aio import AsyncClient
    from cloche.sdk.client import Client


class ProcessHandle:
    """One background process. ``id`` is None when nothing was started (``info.status`` says why)."""

    def __init__(self, client: Client, sandbox_id: str, info: ProcessInfo) -> None:
        self.client, self.sandbox_id, self.info = client, sandbox_id, info
        self.id = info.process_id

    def _id(self) -> str:
        if self.id is None:
            raise ValueError(f"nothing was started ({self.info.status}: {self.info.error})")
        return self.id

    def refresh(self) -> ProcessInfo:
        self.info = self.client.send(process_calls.process(self.sandbox_id, self._id()))
        return self.info

    def logs(self, since: int = 0) -> ProcessLogs:
        """What it printed from ``since`` (ask again with the answer's ``end`` for what is new)."""
        return self.client.send(process_calls.logs(self.sandbox_id, self._id(), since))

    def follow(self, since: int = 0) -> Iterator[ExecEvent]:
        """``stdout``/``stderr`` events as it prints, until it ends; then ``info`` holds how it ended."""
        call = process_calls.follow(self.sandbox_id, self._id(), since)
        for event in self.client.events(call, EventDecoder(exec_done=False)):
            if event.kind == "done" and event.data is not None:
                self.info = ProcessInfo.model_validate(event.data)
            else:
                yield event

    def stop(self) -> ProcessInfo:
        """Kill it (if it still runs) and forget it; its last state."""
        last = self.client.send(process_calls.stop(self.sandbox_id, self._id(), True))
        self.info = last or self.info
        return self.info


class AsyncProcessHandle:
    """``ProcessHandle`` for ``AsyncClient``: the same methods, awaited (``follow`` as an async iterator)."""

    def __init__(self, client: AsyncClient, sandbox_id: str, info: ProcessInfo) -> None:
        self.client, self.sandbox_id, self.info = client, sandbox_id, info
        self.id = info.process_id

    def _id(self) -> str:
        if self.id is None:
            raise ValueError(f"nothing was started ({self.info.status}: {self.info.error})")
        return self.id

    async def refresh(self) -> ProcessInfo:
        self.info = await self.client.send(process_calls.process(self.sandbox_id, self._id()))
        return self.info

    async def logs(self, since: int = 0) -> ProcessLogs:
        return await self.client.send(process_calls.logs(self.sandbox_id, self._id(), since))

    async def follow(self, since: int = 0) -> AsyncIterator[ExecEvent]:
        call = process_calls.follow(self.sandbox_id, self._id(), since)
        async for event in self.client.events(call, EventDecoder(exec_done=False)):
            if event.kind == "done" and event.data is not None:
                self.info = ProcessInfo.model_validate(event.data)
            else:
                yield event

    async def stop(self) -> ProcessInfo:
        last = await self.client.send(process_calls.stop(self.sandbox_id, self._id(), True))
        self.info = last or self.info
        return self.info
