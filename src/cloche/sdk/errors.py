"""Errors the SDK raises: one class per kind of answer, each carrying the server's status, code and message.

The class follows the HTTP status; ``code`` is the server's stable error code::

    ClocheAPIError                 any error answer (and the base to catch)
    ├── InvalidRequestError  400   invalid_request, invalid_path, invalid_archive, unsupported; 422 validation_error
    ├── UnauthorizedError    401   unauthorized
    ├── NotFoundError        404   not_found, sandbox_not_found, sandbox_expired, file_not_found, run_not_found,
                                   secret_not_found
    ├── ConflictError        409   conflict, sandbox_busy
    ├── TooLargeError        413   too_large
    └── UnavailableError     503   jail_unavailable, uid_pool_exhausted, agent_unavailable, store_unavailable
"""

from __future__ import annotations

import httpx

from cloche.errors import ALL_ERRORS


class ClocheAPIError(Exception):
    """An error answer from the server, with its HTTP status and stable error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class InvalidRequestError(ClocheAPIError):
    """The request was malformed or refused as given (400, 422)."""


class UnauthorizedError(ClocheAPIError):
    """The API key is missing or unknown (401)."""


class NotFoundError(ClocheAPIError):
    """The sandbox, file or run does not exist, or belongs to another tenant (404)."""


class ConflictError(ClocheAPIError):
    """The sandbox's state does not allow the action (409)."""


class TooLargeError(ClocheAPIError):
    """An upload, archive or quota limit was exceeded (413)."""


class UnavailableError(ClocheAPIError):
    """The server cannot run sandboxes right now (503)."""


_BY_STATUS: dict[int, type[ClocheAPIError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    422: InvalidRequestError,
    503: UnavailableError,
}
# Streamed errors arrive without a status; the server's own error tree says which status a code has.
_STATUS_BY_CODE: dict[str, int] = {error.code: error.status for error in ALL_ERRORS}


def error_for(status: int, code: str, message: str) -> ClocheAPIError:
    """The exception for an error answer, chosen by its status."""
    return _BY_STATUS.get(status, ClocheAPIError)(status, code, message)


def error_for_code(code: str, message: str) -> ClocheAPIError:
    """The exception for an error reported inside a stream (code and message only)."""
    return error_for(_STATUS_BY_CODE.get(code, 500), code, message)


def raise_for(response: httpx.Response) -> httpx.Response:
    """Return a successful response; raise the matching ``ClocheAPIError`` for any other."""
    if response.is_success:
        return response
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text
    raise error_for(response.status_code, code, message)
