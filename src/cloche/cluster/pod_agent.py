"""The node agent protocol for one sandbox node on Kubernetes: each call goes to the agent in the node's pod,
started again first when it was scaled to zero, and counts as a use of the node (``nodes.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from cloche.models import CreateSandbox, ExecResult, FileList, FilesWritten, Sandbox
from cloche.service.exec_call import ExecCall

if TYPE_CHECKING:
    from cloche.cluster.nodes import KubernetesNodes


class PodAgent:
    def __init__(self, name: str, nodes: KubernetesNodes) -> None:
        self.name = name
        self._nodes = nodes

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        async with self._nodes.using(self.name) as agent:
            return await agent.create(tenant, request)

    async def delete(self, tenant: str, sandbox_id: str) -> None:
        """The sandbox, then its node: pod, policy and claim (one sandbox per node)."""
        async with self._nodes.using(self.name) as agent:
            await agent.delete(tenant, sandbox_id)
        await self._nodes.delete(self.name)

    async def upload(
        self, tenant: str, sandbox_id: str, files: list[tuple[str, BinaryIO]], folder: str
    ) -> FilesWritten:
        async with self._nodes.using(self.name) as agent:
            return await agent.upload(tenant, sandbox_id, files, folder)

    async def extract(self, tenant: str, sandbox_id: str, data: BinaryIO, folder: str) -> FilesWritten:
        async with self._nodes.using(self.name) as agent:
            return await agent.extract(tenant, sandbox_id, data, folder)

    async def read(self, tenant: str, sandbox_id: str, path: str) -> bytes:
        async with self._nodes.using(self.name) as agent:
            return await agent.read(tenant, sandbox_id, path)

    async def listing(self, tenant: str, sandbox_id: str, path: str) -> FileList:
        async with self._nodes.using(self.name) as agent:
            return await agent.listing(tenant, sandbox_id, path)

    async def delete_file(self, tenant: str, sandbox_id: str, path: str) -> None:
        async with self._nodes.using(self.name) as agent:
            await agent.delete_file(tenant, sandbox_id, path)

    async def execute(self, call: ExecCall) -> ExecResult:
        async with self._nodes.using(self.name) as agent:
            return await agent.execute(call)

    async def close(self) -> None:
        """Nothing of its own: the nodes hold the connections."""
