"""Host side: the egress proxy's way out through an operator's own forward proxy (a cluster's egress pods, a
site proxy), for hosts whose network lets nothing else out.

The allowlist is still decided by cloche's proxy before anything leaves; the upstream proxy only carries the tunnel
(``CONNECT host:port``), so name resolution and the public-address check are the upstream's job there. Written by
hand because a CONNECT request and one status line are all it takes; an HTTP client library would add a connection
pool and redirects that a tunnel must not have.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

_MAX_HEAD = 16 * 1024


@dataclass(frozen=True)
class UpstreamProxy:
    """An ``http://host:port`` forward proxy that accepts CONNECT."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> UpstreamProxy:
        """``http://host:port`` -> the proxy; ValueError with the reason for anything else."""
        parts = urlsplit(url.strip())
        if parts.scheme != "http":
            raise ValueError(f"the upstream egress proxy must be an http:// URL, not {url!r}")
        if parts.username or parts.password:
            raise ValueError("the upstream egress proxy URL must not carry credentials")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"the upstream egress proxy URL has a path or query: {url!r}")
        try:
            port = parts.port or 3128
        except ValueError as exc:
            raise ValueError(f"the upstream egress proxy URL has a bad port: {url!r}") from exc
        if not parts.hostname:
            raise ValueError(f"the upstream egress proxy URL has no host: {url!r}")
        return cls(parts.hostname, port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class UpstreamRefused(Exception):
    """The upstream proxy could not be reached or did not open the tunnel; the message says which."""


async def connect_through(
    upstream: UpstreamProxy, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a tunnel to ``host:port`` through ``upstream``; the caller bounds the time it may take."""
    try:
        reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    except OSError as exc:
        raise UpstreamRefused(f"upstream proxy {upstream} unreachable ({exc.strerror or exc})") from None
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        writer.close()
        raise UpstreamRefused(f"upstream proxy {upstream} closed the connection before answering") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(head) > _MAX_HEAD or len(fields) < 2 or fields[1] != "200":
        writer.close()
        raise UpstreamRefused(f"upstream proxy {upstream} refused {authority}: {status_line[:200]}")
    return reader, writer
