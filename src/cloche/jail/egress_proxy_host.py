"""Host-side egress for jailed runs: an allowlisting HTTP CONNECT proxy on a unix socket.

The jail has no network but loopback (``bwrap --unshare-net``). When a run may reach package
registries, a unix socket bound into the jail is its only way out; the in-jail launcher
(``egress_launcher_jail.c``) relays ``127.0.0.1:<port>`` to it so ordinary ``HTTPS_PROXY`` settings work.

The proxy serves only ``CONNECT host:port`` (registries are HTTPS; plain HTTP is refused by design),
checks the hostname against the policy, resolves it itself, refuses when any address is not public
(loopback, private, link-local/metadata, CGNAT, IPv4-mapped forms, ...) and connects to the vetted
address, so there is no DNS-rebinding window between check and use.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloche.jail.egress_policy import EgressPolicy, address_refusal, normalize_host
from cloche.jail.egress_request_host import Refused, authority, request_line, respond, url_host_port
from cloche.jail.egress_upstream_host import UpstreamProxy, UpstreamRefused, connect_through

log = logging.getLogger("cloche.egress")

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``async (host, port) -> addresses``: the DNS seam; the default uses ``loop.getaddrinfo``."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CHUNK = 64 * 1024
_AF_UNIX_PATH_MAX = 107


@dataclass(frozen=True)
class EgressDecision:
    """One request the proxy judged. ``allowed`` is True only when a tunnel was opened."""

    time: float
    host: str
    port: int
    allowed: bool
    reason: str
    address: str | None = None


def _fields(**values: object) -> dict[str, object]:
    """Structured log fields, prefixed so they cannot collide with LogRecord attributes."""
    return {f"egress_{key}": value for key, value in values.items()}


async def _default_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (TimeoutError, OSError):
        writer.transport.abort()  # the peer stopped reading; do not wait on it


@dataclass(frozen=True)
class ProxyLimits:
    """Caps on one proxy: concurrent tunnels, seconds of silence before a tunnel closes, seconds to connect
    upstream and to receive a request head, the head's size, and how many decisions are kept."""

    max_connections: int = 64
    idle_timeout: float = 60.0
    connect_timeout: float = 10.0
    head_timeout: float = 10.0
    max_head_bytes: int = 8192
    max_decisions: int = 10_000


class EgressProxy:
    """An allowlisting CONNECT proxy for one sandbox, listening on a unix socket.

    ``allow_private_for_tests`` is a TEST SEAM: hostnames listed there skip the public-address
    check (so a test registry on 127.0.0.1 can be reached). They must still be in the policy.
    Production code never passes it. ``resolver`` replaces DNS, also mainly for tests.

    ``trusted_networks`` is an operator knob, not a test seam: addresses inside these CIDRs pass
    the public-address check for every allowlisted name. It exists for sites whose DNS answers
    with a non-public egress gateway (e.g. a TLS-inspecting one on 203.0.113.0/24 or 10.x).
    ``upstream`` is one too: allowed tunnels leave through that forward proxy, which resolves the name.
    """

    def __init__(
        self,
        *,
        limits: ProxyLimits | None = None,
        resolver: Resolver | None = None,
        trusted_networks: Sequence[str | IPNetwork] = (),
        upstream: UpstreamProxy | None = None,
        allow_private_for_tests: frozenset[str] = frozenset(),
    ) -> None:
        self._limits = limits or ProxyLimits()
        self._resolver: Resolver = resolver or _default_resolver
        self._trusted = tuple(ipaddress.ip_network(net) for net in trusted_networks)
        self._upstream = upstream
        self._private_ok = frozenset(h for h in map(normalize_host, allow_private_for_tests) if h)
        self._decisions: deque[EgressDecision] = deque(maxlen=self._limits.max_decisions)
        self._policy = EgressPolicy.none()
        self._server: asyncio.Server | None = None
        self._socket_path: Path | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def decisions(self) -> list[EgressDecision]:
        """Decisions in order (the oldest are dropped beyond ``max_decisions``)."""
        return list(self._decisions)

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    def denied_hosts(self) -> list[str]:
        """Hosts refused at least once, in first-refusal order (for "why did my install fail")."""
        return list(dict.fromkeys(d.host for d in self._decisions if not d.allowed and d.host))

    async def start(
        self, socket_path: Path, policy: EgressPolicy, *, uid: int | None = None, mode: int = 0o600
    ) -> None:
        """Listen on ``socket_path``, owned by ``uid`` with ``mode`` (0600: that uid alone may connect)."""
        if self._server is not None:
            raise RuntimeError("egress proxy already started")
        if len(os.fsencode(socket_path)) > _AF_UNIX_PATH_MAX:
            raise ValueError(f"unix socket path too long: {socket_path}")
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(socket_path.lstat().st_mode):
                raise FileExistsError(f"{socket_path} exists and is not a socket")
            socket_path.unlink()  # stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Permissions are fixed before listen(): until then connect() is refused, so no other
            # uid can slip in between bind and chmod.
            sock.bind(os.fspath(socket_path))
            os.chmod(socket_path, mode)
            if uid is not None:
                os.chown(socket_path, uid, -1)
            self._policy = policy
            self._server = await asyncio.start_unix_server(self._handle, sock=sock)
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            raise
        self._socket_path = socket_path
        log.info(
            "egress proxy listening",
            extra=_fields(socket=str(socket_path), allow=list(policy.allow)),
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()

    def _decide(self, host: str, port: int, allowed: bool, reason: str, address: str | None = None) -> None:
        decision = EgressDecision(time.time(), host, port, allowed, reason, address)
        self._decisions.append(decision)
        log.log(
            logging.INFO if allowed else logging.WARNING,
            "egress %s %s:%s (%s)",
            "allowed" if allowed else "denied",
            host,
            port,
            reason,
            extra=_fields(host=host, port=port, allowed=allowed, reason=reason, address=address),
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._tasks) >= self._limits.max_connections:
                self._decide("", 0, False, "too_many_connections")
                await respond(writer, 503, "too many concurrent egress connections")
                return
            self._tasks.add(task)
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # stop(); finishing normally keeps 3.11's stream callback from logging a traceback
        except Exception:
            log.exception("egress connection failed")
        finally:
            self._tasks.discard(task)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = "", 0
        try:
            head, rest = await self._read_head(reader)
            method, target = request_line(head)
            if method != "CONNECT":
                host, port = url_host_port(target)
                raise Refused(405, "method_not_allowed", "only CONNECT (HTTPS) is allowed, not plain HTTP")
            host, port = authority(target)
            if not self._policy.allows(host, port):
                raise Refused(403, "not_allowlisted", f"{host}:{port} is not in this sandbox's allowlist")
            if self._upstream is not None:
                up_reader, up_writer, address = await self._through_upstream(self._upstream, host, port)
            else:
                addresses = await self._vetted_addresses(host, port)
                up_reader, up_writer, address = await self._connect(addresses, port)
        except Refused as refusal:
            self._decide(host, port, False, refusal.reason, refusal.address)
            await respond(writer, refusal.status, refusal.message)
            return
        self._decide(host, port, True, "allowed", address)
        started = time.monotonic()
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                up_writer.write(rest)  # bytes a client sent before waiting for our 200
            up, down, outcome = await self._splice(reader, writer, up_reader, up_writer)
        finally:
            await _close(up_writer)
        log.info(
            "egress tunnel closed %s:%s (%s)",
            host,
            port,
            outcome,
            extra=_fields(
                host=host,
                port=port,
                outcome=outcome,
                bytes_up=up,
                bytes_down=down,
                seconds=round(time.monotonic() - started, 3),
            ),
        )

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        buf = bytearray()
        try:
            async with asyncio.timeout(self._limits.head_timeout):
                while (end := buf.find(b"\r\n\r\n")) < 0:
                    if len(buf) > self._limits.max_head_bytes:
                        break
                    chunk = await reader.read(4096)
                    if not chunk:
                        raise Refused(400, "incomplete_request", "connection closed mid-request")
                    buf += chunk
        except TimeoutError:
            raise Refused(408, "head_timeout", "request head not received in time") from None
        if end < 0 or end + 4 > self._limits.max_head_bytes:
            raise Refused(431, "head_too_large", f"request head over {self._limits.max_head_bytes} bytes")
        return bytes(buf[:end]), bytes(buf[end + 4 :])

    async def _vetted_addresses(self, host: str, port: int) -> list[str]:
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                addresses = list(await self._resolver(host, port))
        except (OSError, TimeoutError) as exc:
            raise Refused(502, "dns_failed", f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise Refused(502, "dns_failed", f"{host} has no addresses")
        if host in self._private_ok:
            return addresses
        for address in addresses:
            why = None if self._trusted_address(address) else address_refusal(address)
            if why is not None:
                # One bad address refuses the name: a public+private answer is a rebinding attempt.
                message = f"{host} resolves to a non-public address ({why})"
                raise Refused(403, f"non_global_address:{why}", message, address)
        return addresses

    def _trusted_address(self, address: str) -> bool:
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            return any(ip in net for net in self._trusted)
        return False

    async def _connect(self, addresses: list[str], port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        error: str = "no address"
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                for address in addresses:
                    try:
                        reader, writer = await asyncio.open_connection(address, port)
                        return reader, writer, address
                    except OSError as exc:
                        error = f"{address}: {exc.strerror or exc}"
        except TimeoutError:
            raise Refused(504, "connect_timeout", "upstream connect timed out", addresses[0]) from None
        raise Refused(502, "connect_failed", f"upstream connect failed ({error})", addresses[-1])

    async def _through_upstream(
        self, upstream: UpstreamProxy, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                reader, writer = await connect_through(upstream, host, port)
        except TimeoutError:
            raise Refused(504, "connect_timeout", f"upstream proxy {upstream} did not answer in time") from None
        except UpstreamRefused as exc:
            raise Refused(502, "upstream_refused", str(exc), str(upstream)) from None
        return reader, writer, f"via {upstream}"

    async def _splice(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
    ) -> tuple[int, int, str]:
        """Relay both ways; half-closes propagate. Ends on close, error, or ``idle_timeout`` of silence."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        moved = [0, 0]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, index: int) -> None:
            nonlocal last
            while data := await src.read(_CHUNK):
                last = loop.time()
                moved[index] += len(data)
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    dst.write_eof()

        pending = {
            asyncio.create_task(pump(client_r, up_w, 0)),
            asyncio.create_task(pump(up_r, client_w, 1)),
        }
        outcome = "closed"
        try:
            while pending and outcome == "closed":
                remaining = last + self._limits.idle_timeout - loop.time()
                if remaining <= 0:
                    outcome = "idle_timeout"
                    break
                done, pending = await asyncio.wait(pending, timeout=remaining)
                if any(task.exception() is not None for task in done):
                    outcome = "error"
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return moved[0], moved[1], outcome
