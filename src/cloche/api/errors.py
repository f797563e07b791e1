"""The one place errors become HTTP responses: ``{"error": {"code", "message"}}`` with the error's status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from cloche.errors import ClocheError

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


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
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeError):  # a body that is not even text reaches the JSON parser
            return JSONResponse(error_body("validation_error", f"{NOT_JSON}: it is not UTF-8 text"), status_code=422)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)
