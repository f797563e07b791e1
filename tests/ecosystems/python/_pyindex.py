"""A small real package index on 127.0.0.1: PyPI's JSON API documents and the wheel files they point at (HTTP
Range requests honoured), so the long tail's checks run against real HTTP without the public internet."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class LocalPypi:
    def __init__(self) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.files: dict[str, Path] = {}
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def json_url(self) -> str:
        return f"{self.base}/pypi"

    def add(
        self, name: str, version: str, age_days: float, wheel: Path | None, classifiers: tuple[str, ...] = ()
    ) -> None:
        """A project whose only release was uploaded ``age_days`` ago, with ``wheel`` (None: an sdist only)."""
        uploaded = (datetime.now(UTC) - timedelta(days=age_days)).isoformat().replace("+00:00", "Z")
        if wheel is not None:
            self.files[wheel.name] = wheel
            file = {"filename": wheel.name, "url": f"/files/{wheel.name}", "packagetype": "bdist_wheel"}
        else:
            file = {"filename": f"{name}-{version}.tar.gz", "url": "/files/none", "packagetype": "sdist"}
        file |= {"upload_time_iso_8601": uploaded, "yanked": False}
        self.projects[name] = {
            "info": {"name": name, "version": version, "classifiers": list(classifiers)},
            "releases": {version: [file]},
            "urls": [file],
        }

    @contextmanager
    def running(self) -> Iterator[LocalPypi]:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                index.requests.append(self.path)
                project = re.fullmatch(r"/pypi/([^/]+)/json", self.path)
                if project and project.group(1) in index.projects:
                    self._send(200, json.dumps(index.projects[project.group(1)]).encode(), "application/json")
                elif self.path.startswith("/files/") and self.path[7:] in index.files:
                    self._range(index.files[self.path[7:]].read_bytes())
                else:
                    self._send(404, b'{"message": "Not Found"}', "application/json")

            def _range(self, data: bytes) -> None:
                match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
                if match is None:
                    self._send(200, data, "application/octet-stream")
                    return
                first, last = match.groups()
                start = max(0, len(data) - int(last)) if not first else int(first)
                end = len(data) - 1 if not first or not last else min(int(last), len(data) - 1)
                extra = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
                self._send(206, data[start : end + 1], "application/octet-stream", extra)

            def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()
