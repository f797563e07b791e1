"""Handles on background processes, for ``SandboxHandle.start`` (blocking) and ``AsyncSandboxHandle.start``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from cloche.process_models import ProcessInfo, ProcessLogs
from cloche.sdk import process_calls
from cloche.sdk.calls import EventDecoder, ExecEvent

if TYPE_CHECKING:  # named in the handles' base classes (as strings: both clients import this module)
    from cloche.sdk.aio import AsyncClient  # noqa: F401
    from cloche.sdk.client import Client  # noqa: F401

C = TypeVar("C")


class _Handle(Generic[C]):
    """What both handles hold: the client, the sandbox, and the process as last seen."""

    def __init__(self, client: C, sandbox_id: str, info: ProcessInfo) -> None:
        self.client, self.sandbox_id, self.info = client, sandbox_id, info
        self.id = info.process_id

    def _id(self) -> str:
        if self.id is None:
            raise ValueError(f"nothing was started ({self.info.status}: {self.info.error})")
        return self.id

    def _shown(self, event: ExecEvent) -> bool:
        """Whether ``follow`` hands the event on; the closing ``done`` updates ``info`` instead."""
        if event.kind == "done" and event.data is not None:
            self.info = ProcessInfo.model_validate(event.data)
            return False
        return True


class ProcessHandle(_Handle["Client"]):
    """One background process. ``id`` is None when nothing was started (``info.status`` says why)."""

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
            if self._shown(event):
                yield event

    def stop(self) -> ProcessInfo:
        """Kill it (if it still runs) and forget it; its last state."""
        last = self.client.send(process_calls.stop(self.sandbox_id, self._id(), True))
        self.info = last or self.info
        return self.info


class AsyncProcessHandle(_Handle["AsyncClient"]):
    """``ProcessHandle`` for ``AsyncClient``: the same methods, awaited (``follow`` as an async iterator)."""

    async def refresh(self) -> ProcessInfo:
        self.info = await self.client.send(process_calls.process(self.sandbox_id, self._id()))
        return self.info

    async def logs(self, since: int = 0) -> ProcessLogs:
        return await self.client.send(process_calls.logs(self.sandbox_id, self._id(), since))

    async def follow(self, since: int = 0) -> AsyncIterator[ExecEvent]:
        call = process_calls.follow(self.sandbox_id, self._id(), since)
        async for event in self.client.events(call, EventDecoder(exec_done=False)):
            if self._shown(event):
                yield event

    async def stop(self) -> ProcessInfo:
        last = await self.client.send(process_calls.stop(self.sandbox_id, self._id(), True))
        self.info = last or self.info
        return self.info
