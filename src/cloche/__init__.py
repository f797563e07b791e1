"""cloche: sandboxes for AI-generated code whose dependencies install once and persist."""

__version__ = "0.1.0"

from cloche.sdk.aio import AsyncClient, AsyncSandboxHandle
from cloche.sdk.calls import CodeEvent, ExecEvent
from cloche.sdk.client import Client, SandboxHandle
from cloche.sdk.errors import (
    ClocheAPIError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from cloche.sdk.processes import AsyncProcessHandle, ProcessHandle

__all__ = [
    "AsyncClient",
    "AsyncProcessHandle",
    "AsyncSandboxHandle",
    "Client",
    "ClocheAPIError",
    "CodeEvent",
    "ConflictError",
    "ExecEvent",
    "InvalidRequestError",
    "NotFoundError",
    "ProcessHandle",
    "SandboxHandle",
    "TooLargeError",
    "UnauthorizedError",
    "UnavailableError",
    "__version__",
]
