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


class EventDecoder:
    """Turns the lines of an SSE exec answer into ``ExecEvent``s; an ``error`` event raises its exception.

    ``exec_done=False`` reads streams whose ``done`` is not an exec result (a process's log): its payload goes
    to ``data``."""

    def __init__(self, exec_done: bool = True) -> None:
        self._event = "message"
        self._exec_done = exec_done

    def feed(self, line: str) -> ExecEvent | None:
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
            return None
        if name != "data":
            return None  # blank separators, comments, ids
        payload = json.loads(value)
        kind = self._event
        if kind == "done" and self._exec_done:
            return ExecEvent(kind, result=ExecResult.model_validate(payload))
        if kind == "error":
            raise error_for_code(str(payload.get("code", "internal")), str(payload.get("message", "")))
        if kind in ("stdout", "stderr"):
            return ExecEvent(kind, text=str(payload.get("data", "")))
        return ExecEvent(kind, data=payload if isinstance(payload, dict) else {"value": payload})
