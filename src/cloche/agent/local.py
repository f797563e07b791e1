"""The in-process agent: the node agent protocol as direct calls into this process's services (no daemon, no
serialisation; the single-node default, and what an agent process serves over HTTP)."""

from __future__ import annotations

from typing import BinaryIO

from cloche.models import CreateSandbox, ExecResult, FileList, FilesWritten, Sandbox
from cloche.service.exec_call import ExecCall
from cloche.service.execute import ExecService
from cloche.service.files import FileService
from cloche.service.sandboxes import SandboxService


class LocalAgent:
    def __init__(self, name: str, sandboxes: SandboxService, files: FileService, execs: ExecService) -> None:
        self.name = name
        self._sandboxes = sandboxes
        self._files = files
        self._execs = execs

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        return await self._sandboxes.create(tenant, request)

    async def delete(self, tenant: str, sandbox_id: str) -> None:
        await self._sandboxes.delete(tenant, sandbox_id)

    async def upload(
        self, tenant: str, sandbox_id: str, files: list[tuple[str, BinaryIO]], folder: str
    ) -> FilesWritten:
        return await self._files.upload(tenant, sandbox_id, files, folder)

    async def extract(self, tenant: str, sandbox_id: str, data: BinaryIO, folder: str) -> FilesWritten:
        return await self._files.extract(tenant, sandbox_id, data, folder)

    async def read(self, tenant: str, sandbox_id: str, path: str) -> bytes:
        return await self._files.read(tenant, sandbox_id, path)

    async def listing(self, tenant: str, sandbox_id: str, path: str) -> FileList:
        return await self._files.listing(tenant, sandbox_id, path)

    async def delete_file(self, tenant: str, sandbox_id: str, path: str) -> None:
        await self._files.delete(tenant, sandbox_id, path)

    async def execute(self, call: ExecCall) -> ExecResult:
        return await self._execs.execute(call)

    async def close(self) -> None:
        """Nothing to release: the services belong to the app."""
