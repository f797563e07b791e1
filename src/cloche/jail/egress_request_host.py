"""Host side: the egress proxy's view of one request head: parsing the request line and the CONNECT target, and
the plain-text answer a refused request gets."""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus
from urllib.parse import urlsplit

from cloche.jail.egress_policy import is_ip_literal, normalize_host


class Refused(Exception):
    """The proxy does not open this tunnel: the HTTP status and message the client gets, the reason recorded."""

    def __init__(self, status: int, reason: str, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.address = address


def request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise Refused(400, "bad_request", "malformed request line")
    return parts[0], parts[1]


def url_host_port(target: str) -> tuple[str, int]:
    """Best-effort host of a refused plain-HTTP request, only for the decision record."""
    try:
        url = urlsplit(target)
        return normalize_host(url.hostname or "") or "", url.port or 80  # normalized: it gets logged
    except ValueError:
        return "", 0


def authority(target: str) -> tuple[str, int]:
    host, sep, port_text = target.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise Refused(400, "bad_request", "CONNECT target must be host:port")
    port = int(port_text)
    if host.startswith("[") or is_ip_literal(host):
        raise Refused(403, "ip_literal", "CONNECT to an IP address is not allowed; use a hostname")
    name = normalize_host(host)
    if name is None:
        raise Refused(400, "invalid_host", "CONNECT host must be an ASCII DNS name")
    return name, port


async def respond(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = f"cloche egress: {message}\n".encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        + ("Allow: CONNECT\r\n" if status == 405 else "")
        + "Connection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        writer.write(head.encode() + body)
        await asyncio.wait_for(writer.drain(), 1.0)
