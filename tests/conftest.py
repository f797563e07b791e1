"""Shared fixtures: a real cloche server process over a temporary data dir, and SDK clients for it."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from cloche import Client
from pg_cluster import PostgresCluster

if TYPE_CHECKING:
    from tests_support import TLSRegistry

# Every data dir a test server used this session: none may keep a mount or a loop device once the suite ends.
SERVER_DATA_DIRS: list[Path] = []
SERVER_PARENT = re.compile(r"cloche-[0-9a-f]{10}")  # api/state.py cgroup_parent: one per data dir
UIDS_TAKEN = "in use by another cloche server"  # how a server refuses a uid range another one holds


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape")  # mountinfo writes space, tab, newline, backslash as \\ooo


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root`` in this mount namespace, deepest first."""
    base = str(root.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == base or point.startswith(base + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def loop_devices_under(root: Path) -> list[str]:
    """Loop devices whose backing file lies below ``root``."""
    base = str(root.resolve()) + "/"
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip().startswith(base):
                found.append(backing.parent.parent.name)
        except OSError:
            continue  # detached while we looked
    return found


def loop_devices_left(root: Path, seconds: float = 5.0) -> list[str]:
    """Loop devices still backed by a file below ``root`` once the kernel had time to detach them (an unmounted
    volume's loop device is released asynchronously)."""
    deadline = time.monotonic() + seconds
    while (left := loop_devices_under(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def release_mounts(root: Path) -> list[Path]:
    """Unmount what a killed server left below ``root`` (its loop devices clear themselves); returns them."""
    left = mounts_under(root)
    for point in left:
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True)
    return left


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``cloche serve`` in a subprocess: the real server, the real jail, a private data dir and uid pool."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, options: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.options = options  # of `cloche serve`, e.g. --agent for a node agent
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CLOCHE_DATA_DIR": str(data_dir),
            "CLOCHE_PORT": str(self.port),
            # Test servers start every run cold, so "no process of the pool is left after a run" stays exact;
            # tests/service/test_warm.py runs its own servers with the warm interpreter on.
            "CLOCHE_WARM_INTERPRETER": "false",
            **self._private_uids(),
            **(env or {}),
        }
        self.own_uids = not env or "CLOCHE_UID_BASE" not in env
        uid_base = int(self.env["CLOCHE_UID_BASE"])
        self.uid_range = (uid_base, uid_base + 1000)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"
        self.leftover_mounts: list[Path] = []  # what the last stop() found still mounted after the server ended
        self.wrapper: list[str] = []  # a command the server is started through (e.g. unshare), if any
        SERVER_DATA_DIRS.append(data_dir)

    @staticmethod
    def _private_uids() -> dict[str, str]:
        """A uid block of its own, outside the default pool (200000-259999), builder uid included."""
        uid_base = 400_000 + secrets.randbelow(500) * 1000
        return {"CLOCHE_UID_BASE": str(uid_base), "CLOCHE_UID_COUNT": "999", "CLOCHE_BUILDER_UID": str(uid_base + 999)}

    def start(self, timeout: float = 90.0) -> ServerProcess:
        """Start the server; a uid block another server holds (its lock says so) is traded for another."""
        for _ in range(5):
            try:
                return self._start_once(timeout)
            except RuntimeError as exc:
                if not self.own_uids or UIDS_TAKEN not in str(exc):
                    raise
                self.env |= self._private_uids()
                uid_base = int(self.env["CLOCHE_UID_BASE"])
                self.uid_range = (uid_base, uid_base + 1000)
        return self._start_once(timeout)

    def _start_once(self, timeout: float) -> ServerProcess:
        cli = [*self.wrapper, sys.executable, "-c", "from cloche.cli.main import main; main()", "serve", *self.options]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cli, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM), then release any workspace volume it left mounted (after a crash())."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.leftover_mounts = release_mounts(self.data_dir)

    def crash(self) -> None:
        """SIGKILL, as a crash: the workspace volumes stay mounted, as the kernel keeps them (stop() releases them)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def client(self, api_key: str | None = None) -> Client:
        return Client(self.url, api_key=api_key)


def pool_processes(low: int, high: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is in [low, high)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        uid = int(fields.get("Uid", "-1 0").split()[0])
        if low <= uid < high and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(status.parent.name))
    return pids


def traversable_dir() -> Path:
    """A temp dir sandbox uids can traverse (pytest's own tmp root is 0700, which the jail cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix="cloche-test-"))
    path.chmod(0o755)
    return path


ServerEnv = Mapping[str, str] | Callable[[Path], Mapping[str, str]]


@contextmanager
def running_server(
    env: ServerEnv | None = None, *, start: bool = True, timeout: float = 90.0
) -> Iterator[ServerProcess]:
    """A server over a fresh data dir in a traversable root, stopped and removed afterwards (also when it
    never became healthy). ``env`` may be a function of the root that first places local package sources
    (a wheel folder, a module proxy, a Maven repository) there and returns the settings naming them."""
    root = traversable_dir()
    settings = env(root) if callable(env) else env
    srv = ServerProcess(root / "data", env=dict(settings or {}))
    try:
        yield srv.start(timeout) if start else srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def no_mount_or_loop_device_outlives_the_suite() -> Iterator[None]:
    yield
    leaked = {str(d): (mounts_under(d), loop_devices_left(d)) for d in SERVER_DATA_DIRS}
    assert not {d: v for d, v in leaked.items() if v != ([], [])}, leaked


def live_server_cgroup_parents() -> set[str]:
    """The cgroup parent of every ``cloche serve`` running on this host (whoever started it)."""
    from cloche.api.state import cgroup_parent
    from cloche.settings import Settings

    parents: set[str] = set()
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" not in argv or not any(b"cloche" in a for a in argv):
            continue
        env = dict(item.decode(errors="replace").partition("=")[::2] for item in environ if b"=" in item)
        data_dir = env.get("CLOCHE_DATA_DIR") or str(Settings.model_fields["data_dir"].default)
        if b"--data-dir" in argv and argv.index(b"--data-dir") + 1 < len(argv):
            data_dir = argv[argv.index(b"--data-dir") + 1].decode(errors="replace")
        parents.add(cgroup_parent(Path(data_dir).resolve()))
    return parents


def server_cgroup_parents() -> list[Path]:
    """Every server's ``cloche-<hash>`` parent on this host (v2: at the root; v1: in each hierarchy)."""
    root = Path("/sys/fs/cgroup")
    found = [*root.glob("cloche-*"), *root.glob("*/cloche-*")]
    return [p for p in found if SERVER_PARENT.fullmatch(p.name) and p.is_dir()]


def remove_gone_servers_cgroup_parents() -> list[Path]:
    """Remove every empty ``cloche-<hash>`` parent whose server is gone; a live server's is never touched, and
    one that still holds run groups is left (rmdir refuses it)."""
    live = live_server_cgroup_parents()
    removed: list[Path] = []
    for parent in server_cgroup_parents():
        if parent.name in live or any(child.is_dir() for child in parent.iterdir()):
            continue
        try:
            parent.rmdir()
            removed.append(parent)
        except OSError:
            continue
    return removed


@pytest.fixture(scope="session", autouse=True)
def no_cgroup_parent_of_a_gone_server_is_left() -> Iterator[None]:
    """The test servers' parents (and those of servers gone before) are removed; live servers' stay."""
    yield
    from cloche.api.state import cgroup_parent

    remove_gone_servers_cgroup_parents()
    ours = {cgroup_parent(d.resolve()) for d in SERVER_DATA_DIRS}
    still = {p.name for p in server_cgroup_parents()} & ours
    assert not still - live_server_cgroup_parents(), still


ISOLATIONS = ("bwrap", "gvisor")


@pytest.fixture(scope="module", params=ISOLATIONS)
def isolation(request: pytest.FixtureRequest) -> str:
    """The isolation tier a module's sandboxes are created with: its tests run once per tier."""
    tier: str = request.param
    return tier


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    with running_server() as srv:
        yield srv


@pytest.fixture
def fresh_server() -> Iterator[ServerProcess]:
    """A server of one's own, not started yet, for tests that restart, crash or reconfigure it."""
    with running_server(start=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def registry_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server whose package registry is the test module's local stand-in (a module proxy, a Maven repository):
    the module's ``registry_env(root)`` places it under ``root`` and returns the settings naming it."""
    with running_server(request.module.registry_env) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server that accepts only the test module's ``API_KEYS`` ("tenant:key", or a bare key, its own tenant)."""
    with running_server({"CLOCHE_API_KEYS": ",".join(request.module.API_KEYS)}) as server:
        yield server


def tenant_http(server: ServerProcess, api_key: str, timeout: float = 120.0) -> httpx.Client:
    """An HTTP client on ``server`` presenting ``api_key`` (an ``API_KEYS`` entry: the part after a tenant name)."""
    token = api_key.partition(":")[2] or api_key
    return httpx.Client(base_url=server.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="session")
def offline_wheels() -> Iterator[Path]:
    """A folder of tiny real wheels (six 1.15/1.16, attrs, requests+idna, PyYAML) standing in for PyPI."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "ecosystems" / "python"))
    from _pywheels import standard_wheels

    root = traversable_dir()
    yield standard_wheels(root / "wheels")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def offline_server(offline_wheels: Path) -> Iterator[ServerProcess]:
    """A server whose Python installs come from ``offline_wheels`` (no registry needed)."""
    with running_server({"CLOCHE_PYTHON_WHEEL_DIR": str(offline_wheels)}) as srv:
        yield srv


@pytest.fixture
def cloche(registry_server: ServerProcess) -> Iterator[Client]:
    """An SDK client on the test module's ``registry_server``."""
    with registry_server.client() as c:
        yield c


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


REGISTRY_HOSTS = ("localhost", "registry.test")  # the names the local TLS registry's certificate is for
REGISTRY_BODY = b"registry ok\n"  # what it answers every GET with


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key) of the local TLS registry."""
    from tests_support import self_signed_certificate

    return self_signed_certificate(tmp_path_factory.mktemp("tls"), *REGISTRY_HOSTS)


@pytest.fixture
def registry(tls_files: tuple[Path, Path]) -> Iterator[TLSRegistry]:
    """A TLS 'package registry' on the host's 127.0.0.1, answering every GET with ``REGISTRY_BODY``."""
    from tests_support import tls_registry

    with tls_registry(tls_files, REGISTRY_BODY) as server:
        yield server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (unix socket only, its own port and temp dir)."""
    cluster = PostgresCluster(free_port()).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """The URL of a fresh, empty database in the session's cluster."""
    return pg_cluster.new_database()
