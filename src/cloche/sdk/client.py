"""Synchronous Python client for the cloche HTTP API.

with Client() as cloche:                      # CLOCHE_URL, CLOCHE_API_KEY
    box = cloche.create(language="python")
    box.write("main.py", "print('hi')")
    print(box.exec(filename="main.py").output)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from cloche.models import (
    ExecResult,
    FileEntry,
    FileList,
    FilesWritten,
    RunList,
    RunRecord,
    Sandbox,
    SandboxList,
)

DEFAULT_URL = "http://127.0.0.1:8000"


class ClocheAPIError(Exception):
    """An error answer from the server, with its status and stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class ExecEvent:
    """One streamed event: ``stdout``/``stderr`` carry ``text``; ``done`` carries ``result``."""

    kind: str
    text: str = ""
    result: ExecResult | None = None


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text
    raise ClocheAPIError(response.status_code, code, message)


class Client:
    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 660.0) -> None:
        url = url or os.environ.get("CLOCHE_URL", DEFAULT_URL)
        api_key = api_key if api_key is not None else os.environ.get("CLOCHE_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response

    def create(self, language: str | None = None, **options: Any) -> SandboxHandle:
        body = {k: v for k, v in {"language": language, **options}.items() if v is not None}
        info = Sandbox.model_validate(self.request("POST", "/v1/sandboxes", json=body).json())
        return SandboxHandle(self, info.id, info)

    def sandbox(self, sandbox_id: str) -> SandboxHandle:
        return SandboxHandle(self, sandbox_id)

    def list(self) -> list[Sandbox]:
        return SandboxList.model_validate(self.request("GET", "/v1/sandboxes").json()).sandboxes


class SandboxHandle:
    """Operations on one sandbox; also a context manager that deletes it on exit."""

    def __init__(self, client: Client, sandbox_id: str, info: Sandbox | None = None) -> None:
        self.client, self.id, self.info = client, sandbox_id, info
        self._base = f"/v1/sandboxes/{sandbox_id}"

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.delete()

    def refresh(self) -> Sandbox:
        self.info = Sandbox.model_validate(self.client.request("GET", self._base).json())
        return self.info

    def delete(self) -> None:
        try:
            self.client.request("DELETE", self._base)
        except ClocheAPIError as exc:
            if exc.status != 404:
                raise

    def write(self, path: str, content: str | bytes) -> FileEntry:
        data = content.encode() if isinstance(content, str) else content
        return FileEntry.model_validate(self.client.request("PUT", f"{self._base}/files/{path}", content=data).json())

    def upload(self, *paths: str | Path, folder: str = "") -> FilesWritten:
        with contextlib.ExitStack() as stack:
            files = [("file", (Path(p).name, stack.enter_context(Path(p).open("rb")))) for p in paths]
            response = self.client.request("POST", f"{self._base}/files", files=files, data={"path": folder})
        return FilesWritten.model_validate(response.json())

    def upload_archive(self, archive: str | Path | bytes, folder: str = "") -> FilesWritten:
        data = archive if isinstance(archive, bytes) else Path(archive).read_bytes()
        files = {"file": ("upload", data)}
        response = self.client.request("POST", f"{self._base}/upload", files=files, data={"path": folder})
        return FilesWritten.model_validate(response.json())

    def read(self, path: str) -> bytes:
        return self.client.request("GET", f"{self._base}/files/{path}").content

    def files(self, path: str = "") -> FileList:
        return FileList.model_validate(self.client.request("GET", f"{self._base}/files", params={"path": path}).json())

    def remove(self, path: str) -> None:
        self.client.request("DELETE", f"{self._base}/files/{path}")

    def exec(self, filename: str | None = None, command: str | None = None, **options: Any) -> ExecResult:
        body = _exec_body(filename, command, options)
        return ExecResult.model_validate(self.client.request("POST", f"{self._base}/exec", json=body).json())

    def stream(self, filename: str | None = None, command: str | None = None, **options: Any) -> Iterator[ExecEvent]:
        """Yield output events as the program prints, then one ``done`` event with the result."""
        body = _exec_body(filename, command, options)
        headers = {"Accept": "text/event-stream"}
        with self.client._http.stream("POST", f"{self._base}/exec", json=body, headers=headers) as response:
            if not response.is_success:
                response.read()
                _raise_for(response)
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    payload = json.loads(line[6:])
                    if event == "done":
                        yield ExecEvent("done", result=ExecResult.model_validate(payload))
                    elif event == "error":
                        raise ClocheAPIError(500, payload["code"], payload["message"])
                    else:
                        yield ExecEvent(event, text=payload["data"])

    def runs(self) -> RunList:
        return RunList.model_validate(self.client.request("GET", f"{self._base}/runs").json())

    def run(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate(self.client.request("GET", f"{self._base}/runs/{run_id}").json())


def _exec_body(filename: str | None, command: str | None, options: dict[str, Any]) -> dict[str, Any]:
    body = {"filename": filename, "command": command, **options}
    return {k: v for k, v in body.items() if v is not None}
