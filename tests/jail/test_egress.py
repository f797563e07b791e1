"""The egress proxy (host) and the Python in-jail launcher, exercised over real sockets on the host.

The proxy runs on an event loop in a background thread; tests are plain blocking socket clients,
which is what pip/npm inside the jail look like from the proxy's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import ValidationError

from cloche.jail.egress_layer import LAUNCHER_PY_SOURCE, EgressHost, open_session, proxy_env
from cloche.jail.egress_policy import EgressPolicy, address_refusal
from cloche.jail.egress_proxy_host import EgressDecision, EgressProxy, ProxyLimits
from cloche.jail.egress_upstream_host import UpstreamProxy
from cloche.jail.profile import JailProfile
from cloche.settings import Settings
from conftest import REGISTRY_BODY
from tests_support import TLSRegistry

T = TypeVar("T")
JAIL_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


ProxyFactory = Callable[..., tuple[EgressProxy, Path]]


@pytest.fixture
def make_proxy(loop: LoopThread, tmp_path: Path) -> Iterator[ProxyFactory]:
    started: list[EgressProxy] = []

    def factory(allow: Sequence[str], uid: int | None = None, **knobs: Any) -> tuple[EgressProxy, Path]:
        proxy = EgressProxy(**knobs)
        path = tmp_path / f"egress{len(started)}.sock"
        loop.run(proxy.start(path, EgressPolicy(tuple(allow)), uid=uid))
        started.append(proxy)
        return proxy, path

    yield factory
    for proxy in started:
        loop.run(proxy.stop())


def fake_dns(table: dict[str, list[str]]) -> Callable[[str, int], Coroutine[Any, Any, list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


@pytest.fixture
def echo_port(loop: LoopThread) -> Iterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(echo, "127.0.0.1", 0)

    server = loop.run(start())
    yield server.sockets[0].getsockname()[1]
    loop.call(server.close)  # on the loop's own thread: asyncio objects are not thread-safe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def python_launcher(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], int]]:
    """Start egress_launcher_jail.py (as the jail would) against a socket; returns its TCP port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(sock: Path) -> int:
        port = free_port()
        argv = [JAIL_PYTHON, str(LAUNCHER_PY_SOURCE), "--listen", f"127.0.0.1:{port}"]
        proc = subprocess.Popen([*argv, "--socket", str(sock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready and proc.stdout.readline() == b"ready\n"
        return port

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def request(path: Path, head: bytes, timeout: float = 5.0) -> tuple[int, socket.socket]:
    """Send ``head`` to the proxy's unix socket; return the response status and the open socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    if head:
        sock.sendall(head)
    response = read_head(sock)
    return int(response.split(b" ", 2)[1]), sock


def connect_status(path: Path, target: str) -> int:
    status, sock = request(path, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    sock.close()
    return status


def last_decision(loop: LoopThread, proxy: EgressProxy) -> EgressDecision:
    return loop.call(lambda: proxy.decisions[-1])


def tls_get(sock: socket.socket, cafile: Path) -> bytes:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with ctx.wrap_socket(sock, server_hostname="registry.test") as tls:
        tls.sendall(b"GET /simple/six/ HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    return data


# -- policy and address judgement ----------------------------------------------------------------


def test_policy_matching() -> None:
    policy = EgressPolicy(("PyPI.org", "registry.test:8443", "*.pythonhosted.org:443"))
    assert policy.allows("pypi.org", 443)
    assert policy.allows("PYPI.ORG.", 443)
    assert not policy.allows("pypi.org", 80)
    assert policy.allows("registry.test", 8443)
    assert not policy.allows("registry.test", 443)
    assert policy.allows("files.pythonhosted.org", 443)
    assert not policy.allows("pythonhosted.org", 443)
    assert not policy.allows("evilpythonhosted.org", 443)
    assert not policy.allows("pyp\u0456.org", 443)  # Cyrillic i: refused, never IDNA-guessed
    assert not policy.allows("pypi.org.evil.test", 443)
    assert not EgressPolicy.none().allows("pypi.org", 443)


@pytest.mark.parametrize("entry", ["1.1.1.1", "[::1]:443", "pypi.org:0", "pypi.org:x", "bücher.de", "a/b"])
def test_policy_rejects_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        EgressPolicy((entry,))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link_local"),
        ("100.64.0.1", "cgnat"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link_local"),
        ("::127.0.0.1", "loopback"),
        ("::8.8.8.8", "ipv4_compatible"),
        ("64:ff9b::10.0.0.1", "private"),
        ("2002:a00:1::1", "private"),
        ("fe80::1%eth0", "link_local"),
        ("fc00::1", "private"),
        ("fec0::1", "site_local"),
        ("8.8.8.8", None),
        ("::ffff:8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_refusal(address: str, reason: str | None) -> None:
    assert address_refusal(address) == reason


def test_proxy_env_points_every_tool_at_the_launcher() -> None:
    env = proxy_env(3128)
    for key in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "PIP_PROXY",
        "npm_config_https_proxy",
    ):
        assert env[key] == "http://127.0.0.1:3128"
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    assert "-Dhttps.proxyPort=3128" in env["JAVA_TOOL_OPTIONS"].split()
    assert "GOPROXY" not in env
    assert LAUNCHER_PY_SOURCE.is_file()


# -- the proxy over its unix socket --------------------------------------------------------------


def test_socket_is_private_to_the_jail_uid(loop: LoopThread, make_proxy: ProxyFactory) -> None:
    uid = 4242 if os.geteuid() == 0 else os.getuid()
    proxy, path = make_proxy([], uid=uid)
    info = path.stat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == uid
    loop.run(proxy.stop())
    assert not path.exists()


def test_start_replaces_a_stale_socket_but_not_a_file(loop: LoopThread, tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    proxy = EgressProxy()
    loop.run(proxy.start(stale, EgressPolicy.none()))
    loop.run(proxy.stop())
    regular = tmp_path / "file.sock"
    regular.write_text("not a socket")
    with pytest.raises(FileExistsError):
        loop.run(EgressProxy().start(regular, EgressPolicy.none()))


def test_allowed_host_end_to_end_through_the_launcher(
    loop: LoopThread,
    make_proxy: ProxyFactory,
    python_launcher: Callable[[Path], int],
    registry: TLSRegistry,
    tls_files: tuple[Path, Path],
) -> None:
    target = f"registry.test:{registry.port}"
    proxy, path = make_proxy(
        [target],
        resolver=fake_dns({"registry.test": ["127.0.0.1"]}),
        allow_private_for_tests=frozenset({"registry.test"}),
    )
    port = python_launcher(path)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert read_head(sock).startswith(b"HTTP/1.1 200 ")
    response = tls_get(sock, tls_files[0])
    assert response.startswith(b"HTTP/1.0 200") and response.endswith(REGISTRY_BODY)
    decision = last_decision(loop, proxy)
    assert (decision.host, decision.port, decision.allowed, decision.address) == (
        "registry.test",
        registry.port,
        True,
        "127.0.0.1",
    )

    # The way pip/uv see it: an ordinary client configured with HTTPS_PROXY.
    verify = ssl.create_default_context(cafile=str(tls_files[0]))
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=verify, trust_env=False) as client:
        reply = client.get(f"https://{target}/simple/six/")
    assert reply.status_code == 200 and reply.content == REGISTRY_BODY
    assert loop.call(proxy.denied_hosts) == []


def test_python_launcher_exits_on_stdin_eof_and_sigterm(make_proxy: ProxyFactory) -> None:
    _, path = make_proxy([])
    for stop in ("stdin", "sigterm"):
        argv = [JAIL_PYTHON, str(LAUNCHER_PY_SOURCE), "--listen", f"127.0.0.1:{free_port()}"]
        proc = subprocess.Popen([*argv, "--socket", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"ready\n"
        if stop == "stdin":
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        proc.stdout.close()
        proc.stdin.close()


def test_unlisted_host_and_port_refused(loop: LoopThread, make_proxy: ProxyFactory) -> None:
    proxy, path = make_proxy(["registry.test:8443"], resolver=fake_dns({"registry.test": ["8.8.8.8"]}))
    assert connect_status(path, "evil.test:443") == 403
    decision = last_decision(loop, proxy)
    assert (decision.host, decision.allowed, decision.reason) == ("evil.test", False, "not_allowlisted")
    assert connect_status(path, "registry.test:8444") == 403
    assert last_decision(loop, proxy).reason == "not_allowlisted"
    assert loop.call(proxy.denied_hosts) == ["evil.test", "registry.test"]


def test_plain_http_refused(loop: LoopThread, make_proxy: ProxyFactory) -> None:
    proxy, path = make_proxy(["registry.test:80", "registry.test"])
    status, sock = request(path, b"GET http://registry.test/simple/ HTTP/1.1\r\nHost: registry.test\r\n\r\n")
    sock.close()
    assert status == 405
    decision = last_decision(loop, proxy)
    assert (decision.host, decision.port, decision.allowed) == ("registry.test", 80, False)
    assert decision.reason == "method_not_allowed"


@pytest.mark.parametrize("target", ["1.1.1.1:443", "127.0.0.1:443", "[::1]:443", "2130706433:443", "0x7f.1:443"])
def test_connect_to_ip_literal_refused(loop: LoopThread, make_proxy: ProxyFactory, target: str) -> None:
    proxy, path = make_proxy(["registry.test"])
    assert connect_status(path, target) == 403
    assert last_decision(loop, proxy).reason == "ip_literal"


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["10.0.0.1"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["8.8.8.8", "192.168.1.1"],  # one bad answer spoils the name
    ],
)
def test_name_resolving_to_non_global_address_refused(
    loop: LoopThread, make_proxy: ProxyFactory, answers: list[str]
) -> None:
    proxy, path = make_proxy(["sneaky.test"], resolver=fake_dns({"sneaky.test": answers}))
    assert connect_status(path, "sneaky.test:443") == 403
    decision = last_decision(loop, proxy)
    assert not decision.allowed and decision.reason.startswith("non_global_address:")
    assert decision.address in answers and decision.address != "8.8.8.8"


def test_dns_and_upstream_failures_are_reported(loop: LoopThread, make_proxy: ProxyFactory) -> None:
    dns = fake_dns({"dead.test": ["127.0.0.1"]})
    proxy, path = make_proxy(
        ["dead.test", f"dead.test:{free_port()}", "missing.test"],
        resolver=dns,
        allow_private_for_tests=frozenset({"dead.test"}),
    )
    assert connect_status(path, "missing.test:443") == 502
    assert last_decision(loop, proxy).reason == "dns_failed"
    assert connect_status(path, "dead.test:443") == 502
    assert last_decision(loop, proxy).reason == "connect_failed"


def test_oversized_and_slow_heads_refused(loop: LoopThread, make_proxy: ProxyFactory) -> None:
    proxy, path = make_proxy(["registry.test"], limits=ProxyLimits(head_timeout=0.3))
    padding = b"X-Pad: " + b"a" * 9000 + b"\r\n"
    status, sock = request(path, b"CONNECT registry.test:443 HTTP/1.1\r\n" + padding + b"\r\n")
    sock.close()
    assert status == 431
    assert last_decision(loop, proxy).reason == "head_too_large"
    status, sock = request(path, b"CONNECT registry.test:443 HTTP/1.1\r\n")
    sock.close()
    assert status == 408


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_connection_cap(loop: LoopThread, make_proxy: ProxyFactory) -> None:
    proxy, path = make_proxy([], limits=ProxyLimits(max_connections=2))
    held = []
    for _ in range(2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        held.append(sock)
    wait_for(lambda: loop.call(lambda: proxy.active_connections) == 2)
    status, sock = request(path, b"")  # refused before any request is read
    sock.close()
    assert status == 503
    assert last_decision(loop, proxy).reason == "too_many_connections"
    held.pop().close()
    wait_for(lambda: loop.call(lambda: proxy.active_connections) == 1)
    assert connect_status(path, "evil.test:443") == 403
    held.pop().close()


def test_idle_tunnel_is_closed(loop: LoopThread, make_proxy: ProxyFactory, echo_port: int) -> None:
    proxy, path = make_proxy(
        [f"echo.test:{echo_port}"],
        limits=ProxyLimits(idle_timeout=0.4),
        resolver=fake_dns({"echo.test": ["127.0.0.1"]}),
        allow_private_for_tests=frozenset({"echo.test"}),
    )
    status, sock = request(path, f"CONNECT echo.test:{echo_port} HTTP/1.1\r\n\r\n".encode())
    assert status == 200
    with sock:
        for _ in range(4):  # traffic keeps the tunnel alive past one idle period
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            time.sleep(0.2)
        started = time.monotonic()
        assert sock.recv(16) == b""
        assert time.monotonic() - started < 3
    wait_for(lambda: loop.call(lambda: proxy.active_connections) == 0)


def test_trusted_networks_admit_a_non_public_gateway(
    loop: LoopThread, make_proxy: ProxyFactory, echo_port: int
) -> None:
    dns = fake_dns({"gw.test": ["127.0.0.1"]})
    _, strict = make_proxy([f"gw.test:{echo_port}"], resolver=dns)
    assert connect_status(strict, f"gw.test:{echo_port}") == 403
    proxy, path = make_proxy([f"gw.test:{echo_port}"], resolver=dns, trusted_networks=["127.0.0.0/8"])
    status, sock = request(path, f"CONNECT gw.test:{echo_port} HTTP/1.1\r\n\r\n".encode())
    with sock:
        assert status == 200
        sock.sendall(b"hello")
        assert sock.recv(16) == b"hello"
    assert last_decision(loop, proxy).address == "127.0.0.1"


@pytest.mark.network
def test_real_pypi_through_proxy(
    loop: LoopThread, make_proxy: ProxyFactory, python_launcher: Callable[[Path], int]
) -> None:
    # Some build hosts answer DNS with a non-public, TLS-inspecting gateway; that is what the
    # operator's trusted_networks knob is for, so trust exactly those answers here.
    answers = {info[4][0] for info in socket.getaddrinfo("pypi.org", 443, type=socket.SOCK_STREAM)}
    trusted = [str(a) for a in answers if address_refusal(str(a)) is not None]
    proxy, path = make_proxy(["pypi.org"], trusted_networks=trusted)
    port = python_launcher(path)
    verify = ssl.create_default_context()  # system store (honours SSL_CERT_FILE)
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=verify, trust_env=False) as client:
        reply = client.get("https://pypi.org/simple/six/", headers={"Accept": "text/html"})
    assert reply.status_code == 200
    assert "six" in reply.text
    decision = last_decision(loop, proxy)
    assert decision.allowed and decision.host == "pypi.org" and decision.port == 443


# -- an upstream forward proxy (a Kubernetes sandbox pod's only way out) -----------------------------


@pytest.fixture
def upstream(loop: LoopThread, echo_port: int) -> Iterator[tuple[UpstreamProxy, list[str]]]:
    """A real CONNECT proxy on loopback that tunnels only ``echo.test`` (to the echo server) and answers 403 to
    anything else; it records each authority asked for."""
    asked: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        authority = head.split(b" ", 2)[1].decode()
        asked.append(authority)
        if not authority.startswith("echo.test:"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", echo_port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        while data := await reader.read(4096):
            up_writer.write(data)
            writer.write(await up_reader.read(4096))
        writer.close()
        up_writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(serve, "127.0.0.1", 0)

    server = loop.run(start())
    yield UpstreamProxy("127.0.0.1", server.sockets[0].getsockname()[1]), asked
    loop.call(server.close)


def test_an_allowed_tunnel_leaves_through_the_upstream_proxy(
    loop: LoopThread, make_proxy: ProxyFactory, upstream: tuple[UpstreamProxy, list[str]], echo_port: int
) -> None:
    via, asked = upstream
    # No DNS at all: the name is the upstream's to resolve, and loopback is no reason to refuse it.
    proxy, path = make_proxy([f"echo.test:{echo_port}"], resolver=fake_dns({}), upstream=via)
    status, sock = request(path, f"CONNECT echo.test:{echo_port} HTTP/1.1\r\n\r\n".encode())
    with sock:
        assert status == 200
        sock.sendall(b"through")
        assert sock.recv(16) == b"through"
    assert asked == [f"echo.test:{echo_port}"]
    assert last_decision(loop, proxy).address == f"via {via}"


def test_a_refused_name_never_reaches_the_upstream_proxy(
    loop: LoopThread, make_proxy: ProxyFactory, upstream: tuple[UpstreamProxy, list[str]]
) -> None:
    via, asked = upstream
    _, path = make_proxy(["pypi.org"], upstream=via)
    assert connect_status(path, "evil.test:443") == 403
    assert connect_status(path, "10.0.0.1:443") == 403
    assert asked == []


def test_an_upstream_refusal_or_absence_is_a_502(
    loop: LoopThread, make_proxy: ProxyFactory, upstream: tuple[UpstreamProxy, list[str]]
) -> None:
    via, asked = upstream
    proxy, path = make_proxy(["blocked.test"], upstream=via)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"CONNECT blocked.test:443 HTTP/1.1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 502 ") and b"refused blocked.test:443: HTTP/1.1 403" in answer
    assert asked == ["blocked.test:443"] and last_decision(loop, proxy).reason == "upstream_refused"
    _, gone = make_proxy(["blocked.test"], upstream=UpstreamProxy("127.0.0.1", free_port()))
    assert connect_status(gone, "blocked.test:443") == 502


@pytest.mark.parametrize(
    "url", ["https://proxy:3128", "http://user:pw@proxy:3128", "http://proxy:3128/path", "http://:3128", "proxy"]
)
def test_an_upstream_proxy_url_must_be_plain_http_host_port(url: str) -> None:
    with pytest.raises(ValueError):
        UpstreamProxy.parse(url)
    with pytest.raises(ValidationError, match="upstream egress proxy"):
        Settings(egress_upstream_proxy=url)
    assert UpstreamProxy.parse("http://cloche-egress:3128") == UpstreamProxy("cloche-egress", 3128)


def test_a_runs_egress_session_uses_the_hosts_upstream_proxy(
    loop: LoopThread, upstream: tuple[UpstreamProxy, list[str]], echo_port: int, tmp_path: Path
) -> None:
    """The layer that opens a run's proxy passes the host's upstream on (the server sets it from its settings)."""
    via, asked = upstream
    policy = EgressPolicy((f"echo.test:{echo_port}",))
    profile = JailProfile(name="exec", host_uid=os.getuid(), egress=policy)

    async def through_session() -> None:
        async with contextlib.AsyncExitStack() as release:
            plumbing = await open_session(profile, EgressHost(tmp_path, upstream=via), release)
            assert plumbing is not None
            reader, writer = await asyncio.open_unix_connection(plumbing.session.directory / "egress.sock")
            writer.write(f"CONNECT echo.test:{echo_port} HTTP/1.1\r\n\r\n".encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
            writer.close()

    loop.run(through_session())
    assert asked == [f"echo.test:{echo_port}"]
