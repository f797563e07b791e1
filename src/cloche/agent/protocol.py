"""The node agent protocol: the operations the API layer asks of the node that holds a sandbox.

Version 1, over HTTP/JSON (``server.py`` and ``remote.py``) or as direct calls (``local.py``). Every operation
names the tenant it acts for; the agent checks it against the sandbox row (both sides read one database). An
exec streams its output and install progress as it happens and ends with the result or an error.

A change that an older peer would misread is a new ``PROTOCOL_VERSION``; the API server refuses an agent whose
``/agent/v1/info`` reports another.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from cloche.models import CreateSandbox, ExecResult, FileEntry, FileList, FilesWritten, Sandbox
from cloche.service.exec_call import ExecCall

PROTOCOL_VERSION = 1


class NodeAgent(Protocol):
    """One node's sandboxes: their workspaces, files, environments and runs."""

    name: str  # the node's CLOCHE_NODE_NAME, recorded as each of its sandboxes' placement

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        """A new sandbox on this node: uid, workspace, row (placement = this node)."""

    async def delete(self, tenant: str, sandbox_id: str) -> None: ...

    async def upload(
        self, tenant: str, sandbox_id: str, files: list[tuple[str, BinaryIO]], folder: str
    ) -> FilesWritten:
        """Write files into the workspace (each name relative to ``folder``)."""

    async def extract(self, tenant: str, sandbox_id: str, data: BinaryIO, folder: str) -> FilesWritten:
        """Unpack an archive into the workspace."""

    async def read(self, tenant: str, sandbox_id: str, path: str) -> bytes: ...

    async def listing(self, tenant: str, sandbox_id: str, path: str) -> FileList: ...

    async def delete_file(self, tenant: str, sandbox_id: str, path: str) -> None: ...

    async def execute(self, call: ExecCall) -> ExecResult:
        """Prepare the dependencies and run the request in the jail, streaming to the call's sinks as it goes."""

    async def close(self) -> None: ...


async def put(agent: NodeAgent, tenant: str, sandbox_id: str, path: str, data: BinaryIO) -> FileEntry:
    """One file at ``path``: an upload of one."""
    return (await agent.upload(tenant, sandbox_id, [(path, data)], "")).files[0]
