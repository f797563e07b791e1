"""Egress as a sandbox's code meets it: through a real server, the real jail and the real proxy.

The jail's network namespace holds only a loopback. The in-jail launcher on 127.0.0.1:3128 relays to the host
proxy, which opens tunnels only to the sandbox's allowlisted names: none under the default policy (user code
gets no registry egress; dependencies install server-side), the hosts given at create otherwise; with
``egress: []`` there is no proxy at all. Each test asserts the refusals, what ``egress_denied`` reports,
and a clean host afterwards.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloche.settings import DEFAULT_REGISTRIES
from conftest import REGISTRY_BODY, ServerProcess
from tests_support import TLSRegistry, assert_clean, run_command

Result = dict[str, Any]


run = functools.partial(run_command, default_timeout=60)


def create(api: httpx.Client, isolation: str, **body: Any) -> str:
    """A sandbox in the module's tier (the egress plumbing differs: gVisor reaches the proxy via its Gofer)."""
    response = api.post("/v1/sandboxes", json={**body, "isolation": isolation})
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    return sid


def jail_python(api: httpx.Client, sid: str, code: str, *args: str) -> tuple[Result, Result]:
    """Run ``code`` with the jail's python3; returns the JSON object it prints, and the run."""
    put = api.put(f"/v1/sandboxes/{sid}/files/probe.py", content=code.encode())
    assert put.status_code == 201, put.text
    result = run(api, sid, "python3 probe.py " + " ".join(f"'{a}'" for a in args))
    assert result["status"] == "succeeded", result
    found: Result = json.loads(result["stdout"].strip().splitlines()[-1])
    return found, result


# A direct connection from a jail with only a loopback: the host's kernel says no route to the network, gVisor's
# network stack no route to the host.
UNREACHABLE = {"bwrap": "ENETUNREACH", "gvisor": "EHOSTUNREACH"}


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


# What a program in the jail tries. "via proxy" lines go the way every HTTP client does (HTTPS_PROXY);
# "raw CONNECT" lines talk to the launcher by hand; the rest try to get around the proxy altogether.
ATTEMPTS = r"""
import errno, json, os, socket, sys, urllib.error, urllib.request

out = {}

def describe(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return "http %d" % exc.code
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
    if "Tunnel connection failed:" in str(exc):  # the proxy's answer to CONNECT, as http.client words it
        return "http " + str(exc).split("Tunnel connection failed:")[1].split()[0]
    if isinstance(exc, socket.gaierror):
        return "gaierror"
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "%s: %s" % (type(exc).__name__, exc)

for url in sys.argv[1].split():
    try:
        urllib.request.urlopen(url, timeout=10).read(64)
        out["via proxy " + url] = "fetched"
    except Exception as exc:
        out["via proxy " + url] = describe(exc)

for target in sys.argv[2].split():
    try:
        with socket.create_connection(("127.0.0.1", 3128), timeout=10) as sock:
            sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
            out["raw CONNECT " + target] = sock.recv(200).decode(errors="replace").split("\r\n")[0]
    except Exception as exc:
        out["raw CONNECT " + target] = describe(exc)

for host, port in [("1.1.1.1", 443), ("169.254.169.254", 80), ("8.8.8.8", 53), ("pypi.org", 443)]:
    try:
        socket.create_connection((host, port), timeout=5).close()
        out["direct %s:%d" % (host, port)] = "connected"
    except Exception as exc:
        out["direct %s:%d" % (host, port)] = describe(exc)
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"\0" * 12, ("8.8.8.8", 53))
    out["udp 8.8.8.8:53"] = "sent"
except Exception as exc:
    out["udp 8.8.8.8:53"] = describe(exc)
for name in ("pypi.org", "example.com"):
    try:
        out["dns " + name] = str(socket.getaddrinfo(name, 443))
    except Exception as exc:
        out["dns " + name] = describe(exc)
out["resolv.conf"] = os.path.exists("/etc/resolv.conf")
print(json.dumps(out))
"""

URLS = [
    "https://example.com/",
    "https://1.1.1.1/",
    "https://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254/latest/meta-data/",
    "http://pypi.org/simple/six/",
    "https://pypi.org:8443/simple/six/",
    "https://registry.npmjs.org.evil.example/",
]
CONNECTS = [
    "169.254.169.254:80",
    "[fd00:ec2::254]:80",
    "127.0.0.1:8000",
    "2130706433:443",
    "localhost:443",
    "metadata.google.internal:80",
    "pypi.org:22",
]


def test_registry_allowlist_refuses_everything_else(server: ServerProcess, api: httpx.Client, isolation: str) -> None:
    sid = create(api, isolation, language="python", egress=list(DEFAULT_REGISTRIES))
    found, result = jail_python(api, sid, ATTEMPTS, " ".join(URLS), " ".join([*CONNECTS, f"localhost:{server.port}"]))
    assert [key for key, how in found.items() if how in ("fetched", "connected", "sent")] == []
    # Through the proxy: not allowlisted (403), plain HTTP (405), IP literals (403).
    assert found["via proxy https://example.com/"] == "http 403"
    assert found["via proxy https://1.1.1.1/"] == "http 403"
    assert found["via proxy https://169.254.169.254/latest/meta-data/"] == "http 403"
    assert found["via proxy http://169.254.169.254/latest/meta-data/"] == "http 405"
    assert found["via proxy http://pypi.org/simple/six/"] == "http 405"
    assert found["via proxy https://pypi.org:8443/simple/six/"] == "http 403"
    assert found["via proxy https://registry.npmjs.org.evil.example/"] == "http 403"
    raw = {key: how for key, how in found.items() if key.startswith("raw CONNECT")}
    assert set(raw.values()) == {"HTTP/1.1 403 Forbidden"}, raw
    # Around the proxy: no route, no resolver.
    for key in ("direct 1.1.1.1:443", "direct 169.254.169.254:80", "direct 8.8.8.8:53", "udp 8.8.8.8:53"):
        assert found[key] == UNREACHABLE[isolation], (key, found[key])
    assert found["direct pypi.org:443"] == "gaierror"
    assert found["dns pypi.org"] == found["dns example.com"] == "gaierror"
    assert found["resolv.conf"] is False
    # The run reports the names it was refused.
    denied = set(result["egress_denied"])
    expected = {"example.com", "pypi.org", "registry.npmjs.org.evil.example", "localhost", "metadata.google.internal"}
    assert expected <= denied, denied
    assert_clean(server, api, sid)


def test_default_policy_gives_user_code_no_registry(server: ServerProcess, api: httpx.Client, isolation: str) -> None:
    sid = create(api, isolation, language="python")
    assert api.get(f"/v1/sandboxes/{sid}").json()["egress"] == []
    registries = ["https://pypi.org/simple/six/", "https://registry.npmjs.org/left-pad", "https://example.com/"]
    found, result = jail_python(api, sid, ATTEMPTS, " ".join(registries), "files.pythonhosted.org:443")
    # The proxy runs, so clients get a clear refusal, and the run lists what it tried.
    assert {found["via proxy " + url] for url in registries} == {"http 403"}, found
    assert found["raw CONNECT files.pythonhosted.org:443"] == "HTTP/1.1 403 Forbidden"
    assert result["egress_denied"] == ["pypi.org", "registry.npmjs.org", "example.com", "files.pythonhosted.org"]
    assert_clean(server, api, sid)


NO_PROXY = r"""
import errno, json, os, socket
out = {"proxy_env": sorted(k for k in os.environ if "proxy" in k.lower()), "run_cloche": os.path.exists("/run/cloche")}
try:
    socket.create_connection(("127.0.0.1", 3128), timeout=5).close()
    out["launcher"] = "connected"
except OSError as exc:
    out["launcher"] = errno.errorcode.get(exc.errno, str(exc.errno))
try:
    socket.create_connection(("1.1.1.1", 443), timeout=5).close()
    out["direct"] = "connected"
except OSError as exc:
    out["direct"] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(out))
"""


def test_empty_egress_means_no_proxy_at_all(server: ServerProcess, api: httpx.Client, isolation: str) -> None:
    sid = create(api, isolation, language="python", egress=[])
    found, result = jail_python(api, sid, NO_PROXY)
    unreachable = UNREACHABLE[isolation]
    assert found == {"proxy_env": [], "run_cloche": False, "launcher": "ECONNREFUSED", "direct": unreachable}
    assert result["egress_denied"] == []
    assert_clean(server, api, sid)


# --- an allowlisted host, for real: a local TLS "registry" -------------------------------------------------


FETCH = r"""
import json, os, socket, ssl, sys
port, cafile = sys.argv[1], sys.argv[2]
out = {}
for target in ("localhost:" + port, "localhost:" + sys.argv[3]):
    try:
        sock = socket.create_connection(("127.0.0.1", 3128), timeout=10)
        sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\r\n")[0].decode()
        if " 200 " not in status:
            out[target] = status
            continue
        context = ssl.create_default_context(cafile=cafile)
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"GET /simple/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
        out[target] = reply.decode().split("\r\n\r\n", 1)[1]
    except Exception as exc:
        out[target] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(out))
"""


def _fetch_through_proxy(
    api: httpx.Client, sid: str, registry: TLSRegistry, cert: Path, other_port: int
) -> tuple[Result, Result]:
    assert api.put(f"/v1/sandboxes/{sid}/files/ca.pem", content=cert.read_bytes()).status_code == 201
    port = registry.port
    return jail_python(api, sid, FETCH, str(port), "/sandbox/ca.pem", str(other_port))


def test_loopback_registry_is_refused_without_trusted_networks(
    server: ServerProcess, api: httpx.Client, registry: TLSRegistry, tls_files: tuple[Path, Path], isolation: str
) -> None:
    port = registry.port
    sid = create(api, isolation, language="python", egress=[f"localhost:{port}"])
    found, result = _fetch_through_proxy(api, sid, registry, tls_files[0], server.port)
    # Allowlisted, but the name resolves to loopback: refused unless the operator trusts that network.
    assert found == {
        f"localhost:{port}": "HTTP/1.1 403 Forbidden",
        f"localhost:{server.port}": "HTTP/1.1 403 Forbidden",
    }
    assert registry.hits == 0
    assert result["egress_denied"] == ["localhost"]
    assert_clean(server, api, sid)


def test_allowlisted_registry_is_reachable_through_a_trusted_network(
    fresh_server: ServerProcess, registry: TLSRegistry, tls_files: tuple[Path, Path], isolation: str
) -> None:
    # The operator knob that admits a non-global gateway admits loopback too (egress.py checks trusted
    # networks before the public-address rules); the allowlist still decides which name and port.
    fresh_server.env["CLOCHE_EGRESS_TRUSTED_NETWORKS"] = "127.0.0.1/32,::1/128"
    fresh_server.start()
    port = registry.port
    with httpx.Client(base_url=fresh_server.url, timeout=120) as api:
        sid = create(api, isolation, language="python", egress=[f"localhost:{port}"])
        found, result = _fetch_through_proxy(api, sid, registry, tls_files[0], fresh_server.port)
        assert found[f"localhost:{port}"] == REGISTRY_BODY.decode()
        assert registry.hits == 1
        # Same trusted address, another port (the cloche API itself): not in the allowlist, refused.
        assert found[f"localhost:{fresh_server.port}"] == "HTTP/1.1 403 Forbidden"
        assert result["egress_denied"] == ["localhost"]
        assert_clean(fresh_server, api, sid)


PYPI = r"""
import json, urllib.request
with urllib.request.urlopen("https://pypi.org/simple/six/", timeout=60) as reply:
    print(json.dumps({"status": reply.status, "six": "six-1.16.0" in reply.read().decode()}))
"""


@pytest.mark.network
def test_allowlisted_registry_reaches_pypi_through_the_proxy(
    server: ServerProcess, api: httpx.Client, isolation: str
) -> None:
    sid = create(api, isolation, language="python", egress=["pypi.org"])
    found, result = jail_python(api, sid, PYPI)
    assert found == {"status": 200, "six": True}
    assert result["egress_denied"] == []
    assert_clean(server, api, sid)


PUBLISH = r"""
import json, os, ssl, sys, urllib.request
os.environ.pop("NO_PROXY"), os.environ.pop("no_proxy")  # the stand-in is named localhost: go through the proxy
request = urllib.request.Request(sys.argv[1], data=os.environ[sys.argv[2]].encode(), method="PUT")
try:
    urllib.request.urlopen(request, timeout=10, context=ssl.create_default_context(cafile="/sandbox/ca.pem"))
    print(json.dumps({"put": "sent"}))
except Exception as exc:
    print(json.dumps({"put": str(exc)}))
"""


def test_user_code_cannot_publish_a_secret_to_a_registry(
    fresh_server: ServerProcess, registry: TLSRegistry, tls_files: tuple[Path, Path], isolation: str
) -> None:
    # The stand-in is a registry the server trusts (install jails may reach it, its loopback address is
    # trusted): under the default policy the sandbox's code still gets no tunnel to it.
    port = registry.port
    fresh_server.env["CLOCHE_EGRESS_TRUSTED_NETWORKS"] = "127.0.0.1/32"
    fresh_server.env["CLOCHE_REGISTRY_ALLOW"] = f"localhost:{port}"
    fresh_server.start()
    token = "npm_" + "s3cr3t" * 6
    publish = (PUBLISH, f"https://localhost:{port}/-/package/x", "NPM_TOKEN")
    with httpx.Client(base_url=fresh_server.url, timeout=120) as api:
        assert api.post("/v1/secrets", json={"name": "NPM_TOKEN", "value": token}).status_code == 201
        sid = create(api, isolation, language="python", secrets=["NPM_TOKEN"])
        assert api.put(f"/v1/sandboxes/{sid}/files/ca.pem", content=tls_files[0].read_bytes()).status_code == 201
        found, result = jail_python(api, sid, *publish)
        assert "403" in found["put"], found
        assert result["egress_denied"] == ["localhost"]
        assert registry.hits == 0 and registry.uploads == []
        # The same code with the stand-in allowlisted explicitly: an opaque tunnel, and the upload arrives.
        sid2 = create(api, isolation, language="python", egress=[f"localhost:{port}"], secrets=["NPM_TOKEN"])
        assert api.put(f"/v1/sandboxes/{sid2}/files/ca.pem", content=tls_files[0].read_bytes()).status_code == 201
        found, result = jail_python(api, sid2, *publish)
        assert found == {"put": "sent"} and registry.uploads == [token.encode()], found
        assert_clean(fresh_server, api, sid)


def test_a_secret_opens_its_own_hosts_to_the_runs_that_hold_it(
    fresh_server: ServerProcess, registry: TLSRegistry, tls_files: tuple[Path, Path], isolation: str
) -> None:
    port = registry.port
    fresh_server.env["CLOCHE_EGRESS_TRUSTED_NETWORKS"] = "127.0.0.1/32"
    fresh_server.start()
    token = "api-" + "k3y" * 8
    publish = (PUBLISH, f"https://localhost:{port}/v1/echo", "API_TOKEN")
    with httpx.Client(base_url=fresh_server.url, timeout=120) as api:
        made = api.post("/v1/secrets", json={"name": "API_TOKEN", "value": token, "hosts": [f"localhost:{port}"]})
        assert made.status_code == 201, made.text
        sid = create(api, isolation, language="python")
        assert api.put(f"/v1/sandboxes/{sid}/files/ca.pem", content=tls_files[0].read_bytes()).status_code == 201
        put = api.put(f"/v1/sandboxes/{sid}/files/probe.py", content=PUBLISH.encode())
        assert put.status_code == 201
        # Without the secret: the default policy, nothing reachable.
        refused = run(api, sid, "API_TOKEN=x-not-the-secret python3 probe.py " + " ".join(publish[1:]))
        assert "403" in refused["stdout"] and refused["egress_denied"] == ["localhost"], refused
        assert registry.uploads == []
        # Holding it (this exec asks): a tunnel to its host, and only there.
        held = run(api, sid, "python3 probe.py " + " ".join(publish[1:]), secrets=["API_TOKEN"])
        assert held["stdout"] == '{"put": "sent"}\n' and held["egress_denied"] == [], held
        assert registry.uploads == [token.encode()]
        elsewhere = f"python3 probe.py https://localhost:{fresh_server.port}/ API_TOKEN"
        other = run(api, sid, elsewhere, secrets=["API_TOKEN"])
        assert "403" in other["stdout"] and other["egress_denied"] == ["localhost"], other
        assert_clean(fresh_server, api, sid)
