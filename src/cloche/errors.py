"""One error tree for cloche, with a closed set of codes.

Every failure a user can see is a ``ClocheError`` subclass. Each class carries a
stable machine code and the HTTP status the API layer maps it to (the mapping
lives here, in one place; ``api/errors.py`` only serialises it). A class names its code (and its
status, unless it keeps its parent's) in its header, and joins ``ALL_ERRORS`` by being defined here::

    ClocheError (500 internal)
    ├── InvalidRequest        400 invalid_request      malformed or contradictory input
    │   ├── InvalidPath       400 invalid_path         .., absolute, NUL, over-long, symlink in the way
    │   ├── InvalidArchive    400 invalid_archive      traversal, links, or unreadable archive
    │   └── Unsupported       400 unsupported          a language or entry kind not supported (yet)
    ├── Unauthorized          401 unauthorized         missing or unknown API key
    ├── NotFound              404 not_found
    │   ├── SandboxNotFound   404 sandbox_not_found    unknown id, another tenant's, or deleted
    │   ├── SandboxExpired    404 sandbox_expired      reaped after its idle TTL
    │   ├── FileNotFound      404 file_not_found
    │   ├── RunNotFound       404 run_not_found
    │   ├── SecretNotFound    404 secret_not_found     no secret of that name for this tenant
    │   ├── ProcessNotFound   404 process_not_found    no background process of that id in the sandbox
    │   ├── PortNotListening  404 port_not_listening   no background process listens on that port
    │   └── ContextNotFound   404 context_not_found    no code context of that id in the sandbox
    ├── Conflict              409 conflict             state does not allow the action
    │   ├── SandboxBusy       409 sandbox_busy         another exec holds the sandbox
    │   ├── ResidentLimit     409 resident_limit       the sandbox already runs its most long-lived processes
    │   └── TooManyContexts   409 too_many_contexts    the sandbox holds its most code contexts
    ├── TooLarge              413 too_large            upload, archive or quota limit exceeded
    ├── IsolationUnavailable  422 isolation_unavailable  the asked isolation tier cannot run here (no runsc)
    ├── TenantQuotaExceeded   429 tenant_quota_exceeded  the tenant holds its most live sandboxes
    ├── PortFailed            502 port_failed          the program on the port broke the connection
    ├── JailUnavailable       503 jail_unavailable     the host cannot create the jail
    ├── PoolExhausted         503 uid_pool_exhausted   every sandbox uid is in use
    ├── UnsafeDataDir         503 unsafe_data_dir      another user owns the data dir (start-up refuses)
    ├── StoreUnavailable      503 store_unavailable    the metadata database cannot be reached or is too new
    └── AgentUnavailable      503 agent_unavailable    the node agent holding the sandbox does not answer
"""

from __future__ import annotations

from typing import Any, ClassVar

_TREE: list[type[ClocheError]] = []


class ClocheError(Exception):
    """Base of every error cloche reports; ``code`` and ``status`` are part of the API."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status
        if cls.__module__ == __name__:
            _TREE.append(cls)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(ClocheError, code="invalid_request", status=400): ...


class InvalidPath(InvalidRequest, code="invalid_path"): ...


class InvalidArchive(InvalidRequest, code="invalid_archive"): ...


class Unsupported(InvalidRequest, code="unsupported"): ...


class Unauthorized(ClocheError, code="unauthorized", status=401): ...


class NotFound(ClocheError, code="not_found", status=404): ...


class SandboxNotFound(NotFound, code="sandbox_not_found"): ...


class SandboxExpired(NotFound, code="sandbox_expired"): ...


class FileNotFound(NotFound, code="file_not_found"): ...


class RunNotFound(NotFound, code="run_not_found"): ...


class SecretNotFound(NotFound, code="secret_not_found"): ...


class ProcessNotFound(NotFound, code="process_not_found"): ...


class PortNotListening(NotFound, code="port_not_listening"): ...


class ContextNotFound(NotFound, code="context_not_found"): ...


class Conflict(ClocheError, code="conflict", status=409): ...


class SandboxBusy(Conflict, code="sandbox_busy"): ...


class ResidentLimit(Conflict, code="resident_limit"): ...


class TooManyContexts(Conflict, code="too_many_contexts"): ...


class TooLarge(ClocheError, code="too_large", status=413): ...


class IsolationUnavailable(ClocheError, code="isolation_unavailable", status=422): ...


class TenantQuotaExceeded(ClocheError, code="tenant_quota_exceeded", status=429): ...


class PortFailed(ClocheError, code="port_failed", status=502): ...


class JailUnavailable(ClocheError, code="jail_unavailable", status=503): ...


class PoolExhausted(ClocheError, code="uid_pool_exhausted", status=503): ...


class UnsafeDataDir(ClocheError, code="unsafe_data_dir", status=503): ...


class StoreUnavailable(ClocheError, code="store_unavailable", status=503): ...


class AgentUnavailable(ClocheError, code="agent_unavailable", status=503): ...


ALL_ERRORS: tuple[type[ClocheError], ...] = (ClocheError, *_TREE)
"""The closed set: every class defined in this module, base first (subclasses elsewhere do not join)."""
