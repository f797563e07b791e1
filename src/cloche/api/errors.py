"""The one place errors become HTTP responses: ``{"error": {"code", "message"}}`` with the error's status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from cloche.errors import ClocheError
from cloche.models import ErrorBody

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}


# What each error status means, for the OpenAPI document (the codes behind each are in docs/api.md).
MEANINGS = {
    400: "The request was refused as given: invalid_request, invalid_path, invalid_archive, unsupported.",
    401: "The API key is missing or unknown (only when the server has API keys).",
    404: "No such sandbox for this key (unknown, another tenant's, deleted or expired), file, run, process or "
    "listening port.",
    409: "The sandbox's state does not allow this now.",
    413: "The body, an archive's expanded size or the workspace quota is over its limit.",
    422: "The body or a parameter does not validate (or is not JSON); the message names each bad field.",
    429: "The tenant already holds its most live sandboxes (tenant_quota_exceeded): delete one first.",
    502: "The program listening on the sandbox's port closed or broke the connection (port_failed).",
    503: "The host cannot run sandboxes now: jail_unavailable, uid_pool_exhausted.",
}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def documented(
    *statuses: int, model: type[BaseModel] = ErrorBody, ok: Mapping[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: its success answer when not plain JSON (``ok``), and each error status it gives
    with the body model of its errors."""
    answers: dict[int | str, dict[str, Any]] = dict(ok or {})
    for status in statuses:
        answers[status] = {"model": model, "description": MEANINGS[status]}
    return answers


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route answers at this path (a 405's ``Allow``; routing alone names one route's)."""
    allowed = []
    for method in HTTP_METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


NOT_JSON = "the request body is not valid JSON"


def _json_error(err: Mapping[str, Any], document: object) -> str:
    """Where and why the body failed to parse, as a person reading their JSON would count."""
    reason = str((err.get("ctx") or {}).get("error") or "unreadable")
    position = err.get("loc", ("body", 0))[-1]
    if not isinstance(document, str) or not isinstance(position, int):
        return f"{NOT_JSON}: {reason}"
    line = document.count("\n", 0, position) + 1
    column = position - (document.rfind("\n", 0, position) + 1) + 1
    return f"{NOT_JSON}: {reason} at line {line} column {column}"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return _json_error(err, exc.body)
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ClocheError)
    async def cloche_error(_: Request, exc: ClocheError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("validation_error", _validation_message(exc)), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeError):  # a body that is not even text reaches the JSON parser
            return JSONResponse(error_body("validation_error", f"{NOT_JSON}: it is not UTF-8 text"), status_code=422)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        headers = exc.headers
        message = str(exc.detail)
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(app, request.scope))
            headers, message = {**(headers or {}), "Allow": allow}, f"{request.method} is not allowed here; use {allow}"
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers)
