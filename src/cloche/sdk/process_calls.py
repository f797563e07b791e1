"""The background-process and ports calls without any I/O, shared by both clients (see ``calls.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloche.process_models import ProcessInfo, ProcessList, ProcessLogs
from cloche.sdk.calls import Call, _base, _drop_none, _model


def _process(sandbox_id: str, process_id: str) -> str:
    return f"{_base(sandbox_id)}/processes/{process_id}"


def start(sandbox_id: str, filename: str | None, command: str | None, options: Mapping[str, Any]) -> Call[ProcessInfo]:
    body = _drop_none({"filename": filename, "command": command, **options, "background": True})
    return Call("POST", f"{_base(sandbox_id)}/exec", _model(ProcessInfo), {"json": body})


def processes(sandbox_id: str) -> Call[list[ProcessInfo]]:
    return Call("GET", f"{_base(sandbox_id)}/processes", lambda r: ProcessList.model_validate(r.json()).processes)


def process(sandbox_id: str, process_id: str) -> Call[ProcessInfo]:
    return Call("GET", _process(sandbox_id, process_id), _model(ProcessInfo))


def logs(sandbox_id: str, process_id: str, since: int) -> Call[ProcessLogs]:
    return Call("GET", f"{_process(sandbox_id, process_id)}/logs", _model(ProcessLogs), {"params": {"since": since}})


def follow(sandbox_id: str, process_id: str, since: int) -> Call[None]:
    """The log as server-sent events; read through ``EventDecoder(exec_done=False)``."""
    options = {"params": {"since": since}, "headers": {"Accept": "text/event-stream"}}
    return Call("GET", f"{_process(sandbox_id, process_id)}/logs", lambda _: None, options)


def stop(sandbox_id: str, process_id: str, missing_ok: bool) -> Call[ProcessInfo | None]:
    def parse(response: Any) -> ProcessInfo | None:
        return None if response.status_code == 404 else ProcessInfo.model_validate(response.json())

    return Call("DELETE", _process(sandbox_id, process_id), parse, missing_ok=missing_ok)


def port_url(base_url: str, sandbox_id: str, port: int, path: str = "") -> str:
    """The public URL of ``port`` in the sandbox (HTTP; ``ws://`` for WebSockets is the same with the scheme
    changed); requests to it need the API key like any other."""
    return f"{base_url.rstrip('/')}{_base(sandbox_id)}/ports/{port}/{path.lstrip('/')}"
