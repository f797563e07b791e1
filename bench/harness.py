"""The bench's machinery: a real server process, timed subprocesses, interleaving, statistics, the machine.

Nothing here imports ``tests``: the server is started the way ``tests/conftest.py`` does it (``cloche serve`` in a
subprocess over a private data dir and uid range), re-implemented so the bench stands alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cloche import Client

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
UV = str(VENV_BIN / "uv") if (VENV_BIN / "uv").exists() else (shutil.which("uv") or "uv")
HOST_PYTHON = "/usr/bin/python3"  # the interpreter cloche's jail runs (ecosystems/python: TARGET_PYTHON)
NODE = shutil.which("node") or "node"
NPM = shutil.which("npm") or "npm"
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A measurement could not be taken (wrong output, failed baseline command, server error)."""


# ---------------------------------------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty sample."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0, "samples": []}
    return {
        "n": len(samples),
        "median": statistics.median(samples),
        "p95": percentile(samples, 95),
        "min": min(samples),
        "max": max(samples),
        "mean": statistics.fmean(samples),
        "samples": [round(s, 3) for s in samples],
    }


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Target:
    """One promise checked against a measurement; ``passed`` is None when it could not be measured."""

    name: str
    goal: str
    measured: str
    passed: bool | None


@dataclass
class Scenario:
    """What a scenario hands back: samples per variant and metric, ratios, targets, notes."""

    name: str
    title: str
    description: str = ""
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def add(self, variant: str, metric: str, value: float) -> None:
        self.samples.setdefault(variant, {}).setdefault(metric, []).append(value)

    def series(self, variant: str, metric: str = "wall_ms") -> list[float]:
        return self.samples.get(variant, {}).get(metric, [])

    def med(self, variant: str, metric: str = "wall_ms") -> float:
        return median(self.series(variant, metric))

    def p95(self, variant: str, metric: str = "wall_ms") -> float:
        values = self.series(variant, metric)
        return percentile(values, 95) if values else math.nan


Measure = Callable[[], Mapping[str, float]]


def interleave(scenario: Scenario, variants: Sequence[tuple[str, Measure]], reps: int, warmup: int) -> None:
    """Run A, B, C, A, B, C, ...: ``warmup`` rounds discarded, then ``reps`` rounds recorded per metric."""
    for round_no in range(warmup + reps):
        tag = "warm-up" if round_no < warmup else f"rep {round_no - warmup + 1}/{reps}"
        for name, measure in variants:
            values = measure()
            if round_no >= warmup:
                for metric, value in values.items():
                    scenario.add(name, metric, value)
        log(f"  {scenario.name}: {tag} done")


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.ms``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.ms = math.nan
        return self

    def __exit__(self, *_: object) -> None:
        self.ms = (time.perf_counter() - self.start) * 1000


# ---------------------------------------------------------------------------------------------- subprocesses


def baseline_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would give a baseline command: without this host's pip/uv/npm config
    (local wheel folders, extra indexes, constraints) nor ``PYTHONDONTWRITEBYTECODE``, so every tool talks to the
    same public registry cloche uses and Python caches bytecode as it normally does."""
    dropped = ("PIP_", "UV_", "NPM_CONFIG_", "npm_config_", "PYTHON", "VIRTUAL_ENV", "NODE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != VENV_BIN)
    if "PIP_CERT" in os.environ:  # a TLS-intercepting gateway's CA, if this host needs one
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_ROOT_USER_ACTION="ignore",
        UV_NO_CONFIG="1",
        NPM_CONFIG_USERCONFIG=os.devnull,
        NPM_CONFIG_UPDATE_NOTIFIER="false",
    )
    env.update(extra)
    return env


def command(
    argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 900
) -> str:
    """Run a command to completion; its stdout, or BenchError with the tail of its output."""
    proc = subprocess.run(
        list(argv), cwd=cwd, env=dict(env) if env is not None else None, capture_output=True, timeout=timeout
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-15:]
        raise BenchError(f"{' '.join(argv)} exited with {proc.returncode}:\n" + "\n".join(tail))
    return proc.stdout.decode(errors="replace")


def timed(argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[float, str]:
    with Stopwatch() as sw:
        out = command(argv, cwd, env)
    return sw.ms, out


def expect(output: str, wanted: str, what: str) -> None:
    if wanted not in output:
        raise BenchError(f"{what}: expected {wanted!r} in the output, got {output[-500:]!r}")


def du_bytes(path: Path) -> int:
    """Disk usage (allocated blocks, hard links counted once) of a tree, like ``du -s``."""
    if not path.exists():
        return 0
    out = command(["du", "-s", "--block-size=1", str(path)])
    return int(out.split()[0])


def traversable_dir(prefix: str) -> Path:
    """A temp dir sandbox uids can traverse (0755; pytest's tmp root is 0700, which the jail cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def vm_rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def processes_of_uids(low: int, high: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is in [low, high)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except (OSError, ValueError):
            continue
        uid = int(fields.get("Uid", "-1 0").split()[0])
        if low <= uid < high and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(status.parent.name))
    return pids


UID_TAKEN = "are in use by another cloche server"
UID_ATTEMPTS = 5


class Server:
    """``cloche serve`` in a subprocess over a fresh data dir, with a private sandbox uid range and builder uid."""

    UID_SPAN = 1000

    def __init__(
        self, root: Path, name: str, env: Mapping[str, str] | None = None, options: Sequence[str] = ()
    ) -> None:
        self.options = tuple(options)  # of `cloche serve` (--agent: a node agent)
        self.root = root / name
        self.root.mkdir(parents=True)
        self.root.chmod(0o755)
        self.data_dir = self.root / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Above the tests' range (400_000 + k * 1000, k < 500) so a concurrent test server never shares a uid.
        self.uid_base = 910_000 + secrets.randbelow(80) * self.UID_SPAN
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "CLOCHE_DATA_DIR": str(self.data_dir),
            "CLOCHE_PORT": str(self.port),
            "CLOCHE_UID_BASE": str(self.uid_base),
            "CLOCHE_UID_COUNT": str(self.UID_SPAN - 1),
            "CLOCHE_BUILDER_UID": str(self.uid_base + self.UID_SPAN - 1),
            **(env or {}),
        }
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_ms = math.nan
        self.served = False  # healthy once: it held the uid range (a server refused for a taken range never did)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 180.0) -> Server:
        cli = [sys.executable, "-c", "from cloche.cli.main import main; main()", "serve", *self.options]
        started = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cli, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    self.served = True
                    self.startup_ms = (time.perf_counter() - started) * 1000
                    return self
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"server did not become healthy:\n{self.log.read_text()[-3000:]}")

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=5).json()
        return data

    def client(self) -> Client:
        return Client(self.url)

    def rss(self) -> int | None:
        return vm_rss_bytes(self.pid) if self.proc is not None else None

    def leftovers(self) -> list[int]:
        return processes_of_uids(self.uid_base, self.uid_base + self.UID_SPAN)

    def stop(self) -> list[int]:
        """SIGTERM, wait, then make sure nothing of its uid range survives; returns pids that had to be killed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Only a range this server held is swept: a refused start means another server's runs live in it.
        survivors = self.leftovers() if self.served else []
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return survivors


class RssSampler:
    """Samples a process's VmRSS in a background thread while the ``with`` block runs."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if (value := vm_rss_bytes(self.pid)) is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def sample_rss(pid: int, seconds: float = 1.0, interval: float = 0.1) -> list[int]:
    with RssSampler(pid, interval) as sampler:
        time.sleep(seconds)
    return sampler.samples


# ---------------------------------------------------------------------------------------------- the machine


def _version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, timeout=30, env=baseline_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()[0]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _git(*args: str) -> str:
    # Read-only queries only: the bench never changes the repository's state.
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.decode(errors="replace").strip()


def source_fingerprint() -> str:
    """sha256 of every source file under src/: tells whether the code changed while the bench ran."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def machine() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_bytes": _mem_total(),
        "kernel": f"{uname.system} {uname.release} {uname.machine}",
        "virtualization": _version(["systemd-detect-virt"]) if shutil.which("systemd-detect-virt") else "unknown",
        "python_jail": _version([HOST_PYTHON, "--version"]),
        "python_harness": sys.version.split()[0],
        "pip": _version([HOST_PYTHON, "-m", "pip", "--version"]).split(" from ")[0],
        "uv": _version([UV, "--version"]),
        "node": _version([NODE, "--version"]),
        "npm": _version([NPM, "--version"]),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Bench:
    """One bench run: settings, the scratch root, the shared server, and data scenarios hand to each other."""

    reps: int = 5
    warmup: int = 1
    quick: bool = False
    keep: bool = False
    full_seed: bool = False
    corpus_limit: int | None = None  # entries per corpus (None: all)
    corpus_ecosystems: tuple[str, ...] = ("python", "node")  # which corpora to run
    corpus_jobs: int = 3  # corpus entries measured at a time
    corpus_budget: float = 3600.0  # seconds; corpus entries not started by then are reported as not measured
    corpus_resume: bool = False  # measure only the entries earlier runs did not, and merge
    corpus_records: tuple[Path, ...] = ()  # earlier runs' progress files (records.jsonl) counted as measured
    corpus_retry_failed: bool = False  # with corpus_resume: the entries cloche failed on are measured again
    results_dir: Path = field(default_factory=lambda: REPO / "bench" / "results")
    root: Path = field(default_factory=lambda: traversable_dir("cloche-bench-"))
    shared: dict[str, Any] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    _main: Server | None = None
    leaked: list[int] = field(default_factory=list)

    def scratch(self, name: str) -> Path:
        path = self.root / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        for part in (self.root / "scratch", path):
            part.chmod(0o755)
        return path

    def start_server(self, name: str, env: Mapping[str, str] | None = None, options: Sequence[str] = ()) -> Server:
        log(f"starting server {name!r}")
        for attempt in range(UID_ATTEMPTS):
            server = Server(self.root, f"{name}-{len(self.servers)}", env, options)
            self.servers.append(server)
            try:
                server.start()
                break
            except BenchError as exc:  # another server (another bench, a test) holds that uid range: pick another
                if UID_TAKEN not in str(exc) or attempt == UID_ATTEMPTS - 1:
                    raise
                log(f"uid range {server.uid_base}+ is taken; another")
        self.shared.setdefault("health", server.health())
        log(f"server {name!r} healthy in {server.startup_ms:.0f} ms (pid {server.pid}, uids {server.uid_base}+)")
        return server

    def stop_server(self, server: Server, remove_data: bool = True) -> None:
        killed = server.stop()
        if killed:
            log(f"server {server.root.name}: killed {len(killed)} leftover processes {killed}")
            self.leaked += killed
        if remove_data and not self.keep:
            shutil.rmtree(server.root, ignore_errors=True)

    @property
    def server(self) -> Server:
        """The shared server (started on first use) for scenarios that need no cold state of their own."""
        if self._main is None:
            self._main = self.start_server("main")
            self.shared["idle_rss_at_start"] = sample_rss(self._main.pid, 1.0)
            self.shared["main_startup_ms"] = self._main.startup_ms
        return self._main

    @contextlib.contextmanager
    def client(self, server: Server | None = None) -> Iterator[Client]:
        with (server or self.server).client() as c:
            yield c

    def close(self) -> None:
        for server in self.servers:
            self.stop_server(server, remove_data=False)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
