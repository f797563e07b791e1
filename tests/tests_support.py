"""Helpers shared by tests that need to look at the host, or stand in for a registry on it."""

from __future__ import annotations

import io
import json
import socket
import ssl
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloche import SandboxHandle
from cloche.api.state import cgroup_parent
from cloche.jail.cgroups import Cgroups
from cloche.models import ExecResult
from conftest import pool_processes


def run_file(box: SandboxHandle, name: str, source: str, *, status: str = "succeeded", **options: Any) -> ExecResult:
    """Write ``source`` to ``name`` in the sandbox and run it; the run must end with ``status`` (else its output is
    shown)."""
    box.write(name, source)
    result = box.exec(filename=name, **options)
    assert result.status == status, result.output
    return result


def pool_processes_of(server: Any) -> list[int]:
    """Live processes of a test server's sandbox uid pool."""
    low, high = server.uid_range
    return pool_processes(low, high)


def leftover_cgroups(server: Any) -> list[Path]:
    """Run cgroups a test server left behind under its own parent."""
    return Cgroups.detect(cgroup_parent(server.data_dir.resolve())).leftovers()


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root``, creating folders; returns ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def zip_of(members: Mapping[str, bytes | str]) -> bytes:
    """A zip archive (deflated) of ``members``: name -> content."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def run_command(api: Any, sid: str, command: str, default_timeout: float | None = None, **body: Any) -> dict[str, Any]:
    """Exec a shell command over HTTP and return the result JSON (any HTTP error fails the test)."""
    timeout = {"timeout_seconds": default_timeout} if default_timeout else {}
    response = api.post(f"/v1/sandboxes/{sid}/exec", json={"command": command, **timeout, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def sse_exec(api: Any, sid: str, body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """An exec as server-sent events: (event, data) pairs in order."""
    return sse_events(api, "POST", f"/v1/sandboxes/{sid}/exec", json=body)


def sse_events(
    api: Any, method: str, url: str, on_event: Callable[[str, Any], None] | None = None, **options: Any
) -> list[tuple[str, Any]]:
    """A request answered with server-sent events, read to the end: (event, data) pairs in order; ``on_event``
    sees each as it arrives (to act in the middle of the stream)."""
    events: list[tuple[str, Any]] = []
    with api.stream(method, url, headers={"Accept": "text/event-stream"}, **options) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if on_event is not None:
                    on_event(*events[-1])
    return events


def assert_clean(server: Any, api: Any, sid: str) -> None:
    """Nothing of the pool left running, no run cgroup left, the server healthy, the sandbox usable."""
    low, high = server.uid_range
    deadline = time.monotonic() + 5
    while (pool_processes(low, high) or leftover_cgroups(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool_processes(low, high) == []
    assert leftover_cgroups(server) == []
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    after = run_command(api, sid, "echo ok", default_timeout=30)
    assert (after["status"], after["stdout"]) == ("succeeded", "ok\n"), after
    assert pool_processes(low, high) == []


def self_signed_certificate(folder: Path, hostname: str, *more: str) -> tuple[Path, Path]:
    """(cert, key) PEM files for ``hostname`` (and the names in ``more``), valid two days: a local registry's TLS
    identity."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={hostname}"),
            *("-addext", "subjectAltName=" + ",".join(f"DNS:{name}" for name in (hostname, *more))),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class TLSRegistry(ThreadingHTTPServer):
    """A TLS 'package registry' on 127.0.0.1 that answers every GET with ``body``, accepts every upload (PUT,
    POST: the way a publish goes) and keeps what it was sent; ``hits`` counts requests of any kind."""

    daemon_threads = True

    def __init__(self, tls_files: tuple[Path, Path], body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _RegistryHandler)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*tls_files)
        self.body = body
        self.hits = 0
        self.uploads: list[bytes] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Handshake in the handler thread, not in the accept loop.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class _RegistryHandler(BaseHTTPRequestHandler):
    server: TLSRegistry

    def do_GET(self) -> None:
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def do_PUT(self) -> None:
        self.server.hits += 1
        self.server.uploads.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def tls_registry(tls_files: tuple[Path, Path], body: bytes) -> Iterator[TLSRegistry]:
    """A running ``TLSRegistry``, shut down afterwards."""
    server = TLSRegistry(tls_files, body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
