"""The API calls without any I/O, shared by ``Client`` and ``AsyncClient``.

Each function returns a ``Call``: the request to send and how to read its answer. The two clients only send
calls (one blocking, one awaiting) and feed streamed lines to ``EventDecoder``; every path, body and parsing
rule lives here once.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from cloche.models import (
    ExecResult,
    FileEntry,
    FileList,
    FilesWritten,
    RunList,
    RunRecord,
    Sandbox,
    SandboxList,
    SecretInfo,
    SecretList,
)
from cloche.models_code import CodeOutput, CodeResult, Context, ContextList
from cloche.sdk.errors import error_for_code, raise_for

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 660.0  # above the server's longest wall clock, so a long run is not cut by the client

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


def http_options(url: str | None, api_key: str | None, timeout: float) -> dict[str, Any]:
    """httpx client options from explicit values or ``CLOCHE_URL`` / ``CLOCHE_API_KEY``."""
    url = url or os.environ.get("CLOCHE_URL", DEFAULT_URL)
    api_key = api_key if api_key is not None else os.environ.get("CLOCHE_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {"base_url": url.rstrip("/"), "headers": headers, "timeout": timeout}


class Endpoint(Generic[H]):
    """What both clients share about their server connection."""

    _http: H

    @property
    def url(self) -> str:
        """The server's base URL."""
        return str(self._http.base_url)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request (method, path, httpx keyword arguments) and the rule that turns its answer into ``T``."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    options: Mapping[str, Any] = field(default_factory=dict)
    missing_ok: bool = False  # a 404 answer counts as done (deleting what is already gone)

    def result(self, response: httpx.Response) -> T:
        if not (self.missing_ok and response.status_code == 404):
            raise_for(response)
        return self.parse(response)


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate(response.json())


def _nothing(_: httpx.Response) -> None:
    return None


def _json(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = response.json()
    return data


def _base(sandbox_id: str) -> str:
    return f"/v1/sandboxes/{sandbox_id}"


def _file(sandbox_id: str, path: str) -> str:
    """The URL of a workspace path, escaped so that the server sees it as given (``..`` too, which it refuses)."""
    segments = [urllib.parse.quote(part, safe="") for part in path.split("/")]
    escaped = "/".join(part.replace(".", "%2E") if part in {".", ".."} else part for part in segments)
    return f"{_base(sandbox_id)}/files/{escaped}"


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# sandboxes


def create(language: str | None, options: Mapping[str, Any]) -> Call[Sandbox]:
    body = _drop_none({"language": language, **options})
    return Call("POST", "/v1/sandboxes", _model(Sandbox), {"json": body})


def list_sandboxes() -> Call[list[Sandbox]]:
    return Call("GET", "/v1/sandboxes", lambda r: SandboxList.model_validate(r.json()).sandboxes)


def get(sandbox_id: str) -> Call[Sandbox]:
    return Call("GET", _base(sandbox_id), _model(Sandbox))


def delete(sandbox_id: str, missing_ok: bool = True) -> Call[None]:
    return Call("DELETE", _base(sandbox_id), _nothing, missing_ok=missing_ok)


# secrets (per tenant; values go in, never come back)


def put_secret(name: str, value: str, hosts: tuple[str, ...]) -> Call[SecretInfo]:
    body = {"name": name, "value": value, "hosts": list(hosts)}
    return Call("POST", "/v1/secrets", _model(SecretInfo), {"json": body})


def list_secrets() -> Call[list[SecretInfo]]:
    return Call("GET", "/v1/secrets", lambda r: SecretList.model_validate(r.json()).secrets)


def delete_secret(name: str, missing_ok: bool = True) -> Call[None]:
    return Call("DELETE", f"/v1/secrets/{urllib.parse.quote(name, safe='')}", _nothing, missing_ok=missing_ok)


# files


def write(sandbox_id: str, path: str, content: str | bytes) -> Call[FileEntry]:
    data = content.encode() if isinstance(content, str) else content
    return Call("PUT", _file(sandbox_id, path), _model(FileEntry), {"content": data})


def upload(sandbox_id: str, paths: tuple[str | Path, ...], folder: str) -> Call[FilesWritten]:
    files = [("file", (Path(p).name, Path(p).read_bytes())) for p in paths]
    return Call("POST", f"{_base(sandbox_id)}/files", _model(FilesWritten), {"files": files, "data": {"path": folder}})


def upload_archive(sandbox_id: str, archive: str | Path | bytes, folder: str) -> Call[FilesWritten]:
    data = archive if isinstance(archive, bytes) else Path(archive).read_bytes()
    options = {"files": {"file": ("upload", data)}, "data": {"path": folder}}
    return Call("POST", f"{_base(sandbox_id)}/upload", _model(FilesWritten), options)


def read(sandbox_id: str, path: str) -> Call[bytes]:
    return Call("GET", _file(sandbox_id, path), lambda r: r.content)


def files(sandbox_id: str, path: str) -> Call[FileList]:
    return Call("GET", f"{_base(sandbox_id)}/files", _model(FileList), {"params": {"path": path}})


def remove(sandbox_id: str, path: str) -> Call[None]:
    return Call("DELETE", _file(sandbox_id, path), _nothing)


# exec and runs


def exec_(sandbox_id: str, filename: str | None, command: str | None, options: Mapping[str, Any]) -> Call[ExecResult]:
    body = _drop_none({"filename": filename, "command": command, **options})
    return Call("POST", f"{_base(sandbox_id)}/exec", _model(ExecResult), {"json": body})


def exec_stream(sandbox_id: str, filename: str | None, command: str | None, options: Mapping[str, Any]) -> Call[None]:
    """The exec call asking for server-sent events; its answer is read line by line through ``EventDecoder``."""
    call = exec_(sandbox_id, filename, command, options)
    return Call(call.method, call.path, _nothing, {**call.options, "headers": {"Accept": "text/event-stream"}})


def runs(sandbox_id: str, limit: int) -> Call[RunList]:
    return Call("GET", f"{_base(sandbox_id)}/runs", _model(RunList), {"params": {"limit": limit}})


def run(sandbox_id: str, run_id: str) -> Call[RunRecord]:
    return Call("GET", f"{_base(sandbox_id)}/runs/{run_id}", _model(RunRecord))


def sbom(sandbox_id: str, run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"{_base(sandbox_id)}/runs/{run_id}/sbom", _json)


def diff(sandbox_id: str, run_from: str, run_to: str) -> Call[dict[str, Any]]:
    params = {"from": run_from, "to": run_to}
    return Call("GET", f"{_base(sandbox_id)}/deps/diff", _json, {"params": params})


# code contexts


def _code_body(code: str, context: str | Context | None, timeout: float | None) -> dict[str, Any]:
    context_id = context.id if isinstance(context, Context) else context
    return _drop_none({"code": code, "context_id": context_id, "timeout_seconds": timeout})


def run_code(sandbox_id: str, code: str, context: str | Context | None, timeout: float | None) -> Call[CodeResult]:
    body = _code_body(code, context, timeout)
    return Call("POST", f"{_base(sandbox_id)}/code", _model(CodeResult), {"json": body})


def code_stream(sandbox_id: str, code: str, context: str | Context | None, timeout: float | None) -> Call[None]:
    call = run_code(sandbox_id, code, context, timeout)
    return Call(call.method, call.path, _nothing, {**call.options, "headers": {"Accept": "text/event-stream"}})


def create_context(sandbox_id: str) -> Call[Context]:
    return Call("POST", f"{_base(sandbox_id)}/contexts", _model(Context), {"json": {}})


def list_contexts(sandbox_id: str) -> Call[list[Context]]:
    return Call("GET", f"{_base(sandbox_id)}/contexts", lambda r: ContextList.model_validate(r.json()).contexts)


def get_context(sandbox_id: str, context_id: str) -> Call[Context]:
    return Call("GET", f"{_base(sandbox_id)}/contexts/{context_id}", _model(Context))


def restart_context(sandbox_id: str, context_id: str) -> Call[Context]:
    return Call("POST", f"{_base(sandbox_id)}/contexts/{context_id}/restart", _model(Context))


def delete_context(sandbox_id: str, context_id: str, missing_ok: bool = True) -> Call[None]:
    path = f"{_base(sandbox_id)}/contexts/{context_id}"
    return Call("DELETE", path, _nothing, missing_ok=missing_ok)


# streaming


@dataclass(frozen=True)
class ExecEvent:
    """One streamed event.

    ``stdout``/``stderr`` carry ``text``; ``install`` carries ``data`` (``{"phase": "resolving" | "installing" |
    "installed", ...}``); the last event, ``done``, carries ``result``. Kinds a newer server adds arrive with
    their payload in ``data``.
    """

    kind: str
    text: str = ""
    result: ExecResult | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class CodeEvent:
    """One streamed event of a cell: ``stdout``/``stderr`` carry ``text``, ``result`` a displayed value
    (``output``), ``install`` its ``data``; the last, ``done``, carries the cell's ``result``."""

    kind: str
    text: str = ""
    output: CodeOutput | None = None
    result: CodeResult | None = None
    data: dict[str, Any] | None = None


E = TypeVar("E", ExecEvent, CodeEvent)


class EventDecoder(Generic[E]):
    """Turns the lines of an SSE answer into events; an ``error`` event raises its exception. ``EventDecoder()``
    reads an exec's events, ``EventDecoder.code()`` a cell's."""

    def __init__(self, make: Callable[[str, Any], E] | None = None, *, exec_done: bool = True) -> None:
        """``exec_done=False`` reads streams whose ``done`` is not an exec result (a process's log): its payload
        goes to ``data``."""
        self._event = "message"
        self._make: Callable[[str, Any], Any] = make or (_exec_event if exec_done else _log_event)

    @classmethod
    def code(cls) -> EventDecoder[CodeEvent]:
        return EventDecoder(_code_event)

    def feed(self, line: str) -> E | None:
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
            return None
        if name != "data":
            return None  # blank separators, comments, ids
        payload = json.loads(value)
        if self._event == "error":
            raise error_for_code(str(payload.get("code", "internal")), str(payload.get("message", "")))
        event: E = self._make(self._event, payload)
        return event


def _data(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {"value": payload}


def _exec_event(kind: str, payload: Any) -> ExecEvent:
    if kind == "done":
        return ExecEvent(kind, result=ExecResult.model_validate(payload))
    if kind in ("stdout", "stderr"):
        return ExecEvent(kind, text=str(payload.get("data", "")))
    return ExecEvent(kind, data=_data(payload))


def _log_event(kind: str, payload: Any) -> ExecEvent:
    if kind in ("stdout", "stderr"):
        return ExecEvent(kind, text=str(payload.get("data", "")))
    return ExecEvent(kind, data=_data(payload))


def _code_event(kind: str, payload: Any) -> CodeEvent:
    if kind == "done":
        return CodeEvent(kind, result=CodeResult.model_validate(payload))
    if kind == "result":
        return CodeEvent(kind, output=CodeOutput.model_validate(payload))
    if kind in ("stdout", "stderr"):
        return CodeEvent(kind, text=str(payload.get("data", "")))
    return CodeEvent(kind, data=_data(payload))
