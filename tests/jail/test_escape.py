"""Escape attempts from inside the real jail, through a real server: every one must be refused.

Each test runs hostile code with the API exactly as a user's program would, asserts that the forbidden
thing did not happen (a host file read, a privileged syscall, a host socket reached, a host process
signalled, ...) and then that the host is clean: no process of the server's uid pool is left, no run cgroup
is left under the server's cgroup parent, ``/health`` answers, and the same sandbox still runs ``echo ok``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloche.jail.mounts import SYNTHETIC_ETC
from conftest import ServerProcess, pool_processes
from tests_support import assert_clean, leftover_cgroups, run_command

Result = dict[str, Any]

# Probe results: "ok" when a call went through, otherwise the errno name it failed with.
PROBE_HEAD = r"""
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}

def err(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno))

def sc(nr, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return "ok" if ret >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
"""


# --- host checks shared by every test --------------------------------------------------------------------


run = functools.partial(run_command, default_timeout=30)


def jail_python(api: httpx.Client, sid: str, code: str, *args: str) -> Result:
    """Run ``code`` with the jail's python3; it prints one JSON object, which is returned."""
    put = api.put(f"/v1/sandboxes/{sid}/files/probe.py", content=(PROBE_HEAD + code).encode())
    assert put.status_code == 201, put.text
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)
    result = run(api, sid, f"python3 probe.py {quoted}")
    assert result["status"] == "succeeded", result
    found: Result = json.loads(result["stdout"].strip().splitlines()[-1])
    return found


def host_uid(server: ServerProcess, sid: str) -> int:
    return (server.data_dir / "workspaces" / sid).stat().st_uid


def pool_uids(server: ServerProcess) -> set[int]:
    """The host uids of the live processes of the server's pool."""
    uids: set[int] = set()
    for pid in pool_processes(*server.uid_range):
        with contextlib.suppress(OSError):
            uids.add(os.stat(f"/proc/{pid}").st_uid)
    return uids


def runs_on_the_host(server: ServerProcess, uid: int, isolation: str) -> bool:
    """Whether a run is live on the host: processes of the sandbox's uid (bwrap), or a run cgroup holding
    processes (gVisor: runsc, the Sentry and the Gofer run as root and nobody, never as the sandbox's uid)."""
    if isolation == "bwrap":
        return bool(pool_processes(uid, uid + 1))
    return any((group / "cgroup.procs").read_text().split() for group in leftover_cgroups(server))


@contextlib.contextmanager
def busy(api: httpx.Client, sid: str, marker: str = "") -> Iterator[None]:
    """Keep a run going in ``sid`` (streamed) until the block ends; closing the stream kills the run."""
    body = {"command": f"echo go; sleep 60{marker}", "timeout_seconds": 60}
    headers = {"Accept": "text/event-stream"}
    with api.stream("POST", f"/v1/sandboxes/{sid}/exec", json=body, headers=headers) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # held: dropping the iterator would close the stream and kill the run
        for line in lines:
            if line.startswith("data: ") and "go" in line:
                break
        yield


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def _create(api: httpx.Client, isolation: str) -> str:
    response = api.post("/v1/sandboxes", json={"language": "python", "isolation": isolation})
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    return sid


@pytest.fixture(scope="module")
def box(api: httpx.Client, isolation: str) -> str:
    """The attacker's sandbox (default policy: registry-only egress through the proxy), in the module's tier."""
    return _create(api, isolation)


@pytest.fixture(scope="module")
def victim(api: httpx.Client, isolation: str) -> tuple[str, str]:
    """Another tenant's sandbox holding a secret file: (sandbox id, secret)."""
    sid = _create(api, isolation)
    secret = "victim-secret-" + secrets.token_hex(16)
    assert api.put(f"/v1/sandboxes/{sid}/files/secret-{secret}.txt", content=secret.encode()).status_code == 201
    return sid, secret


# --- reading host files ------------------------------------------------------------------------------------

READ_PATHS = r"""
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            out[path] = "listed:" + ",".join(sorted(os.listdir(path)))
        else:
            with open(path, "rb") as f:
                out[path] = "read:" + f.read(64).hex()
    except OSError as exc:
        out[path] = err(exc)
print(json.dumps(out))
"""


def test_host_secrets_and_server_data_are_not_readable(server: ServerProcess, api: httpx.Client, box: str) -> None:
    data = server.data_dir
    db = data / "cloche.db"
    assert db.read_bytes()[:16] == b"SQLite format 3\x00"  # the target exists on the host: the probe is real
    assert Path("/etc/shadow").exists()
    targets = [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/root",
        "/home",
        "/var/lib",
        str(data),
        str(data / "workspaces"),
        str(db),
        f"{db}-wal",
        str(data / "jail" / "etc"),
        f"/sandbox/../..{db}",
        f"/sandbox/../../../../..{data}/workspaces",
        f"/proc/1/root{db}",
        f"/proc/self/root{db}",
        "/proc/1/root/etc/shadow",
        "/proc/self/cwd/../../etc/shadow",
    ]
    found = jail_python(api, box, READ_PATHS, *targets)
    assert set(found) == set(targets)
    leaked = {path: how for path, how in found.items() if how.startswith(("read:", "listed:"))}
    assert leaked == {}
    assert set(found.values()) <= {"ENOENT", "EACCES"}
    assert_clean(server, api, box)


def test_other_sandbox_workspace_is_unreachable(
    server: ServerProcess, api: httpx.Client, box: str, victim: tuple[str, str], isolation: str
) -> None:
    other, secret = victim
    workspace = server.data_dir / "workspaces" / other
    assert (workspace / f"secret-{secret}.txt").read_text() == secret
    # The victim is busy while the attacker looks, so its processes exist on the host.
    marker = f".{secrets.randbelow(900_000) + 100_000}"
    victim_uid = host_uid(server, other)
    with busy(api, other, marker):
        assert runs_on_the_host(server, victim_uid, isolation)
        code = r"""
import glob
name = "secret-" + sys.argv[1] + ".txt"
guesses = [sys.argv[2] + "/" + name, "/sandbox/../" + sys.argv[3] + "/" + name, "/sandbox/../../" + name,
           "/tmp/../" + sys.argv[2] + "/" + name]
guesses += [root + "/sandbox/" + name for root in glob.glob("/proc/[0-9]*/root")]
guesses += [root + sys.argv[2] + "/" + name for root in glob.glob("/proc/[0-9]*/root")]
for path in guesses:
    try:
        out[path] = "read:" + open(path).read()
    except OSError as exc:
        out[path] = err(exc)
cmdlines = []
for entry in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        cmdlines.append(open(entry, "rb").read().decode(errors="replace"))
    except OSError:
        pass
hits = []
for top, dirs, files in os.walk("/"):
    if top == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "usr")]
    hits += [os.path.join(top, f) for f in files if sys.argv[1] in f]
print(json.dumps({"opens": out, "cmdlines": cmdlines, "hits": hits}))
"""
        found = jail_python(api, box, code, secret, str(workspace), other)
        assert runs_on_the_host(server, victim_uid, isolation), "the victim must still run"
    assert [how for how in found["opens"].values() if how.startswith("read:")] == []
    assert set(found["opens"].values()) <= {"ENOENT", "EACCES"}
    assert found["hits"] == []
    assert not any(marker in cmdline for cmdline in found["cmdlines"])  # the victim's processes are invisible
    assert_clean(server, api, box)


# --- privileged system calls -------------------------------------------------------------------------------

SYSCALLS = r"""
import ctypes, struct, subprocess, time
buf = ctypes.create_string_buffer(256)
out["mount"] = sc(165, b"none", b"/tmp", b"tmpfs", 0, 0)
out["umount2"] = sc(166, b"/sandbox", 2)
out["ptrace_attach_pid1"] = sc(101, 16, 1, 0, 0)
out["ptrace_seize_pid1"] = sc(101, 0x4206, 1, 0, 0)
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
out["ptrace_attach_sibling"] = sc(101, 16, child, 0, 0)
iov = (ctypes.c_ulong * 2)(ctypes.addressof(buf), 8)
out["process_vm_readv_sibling"] = sc(310, child, ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0)
os.kill(child, 9)
os.waitpid(child, 0)
out["unshare_newuser"] = sc(272, 0x10000000)
out["unshare_newns"] = sc(272, 0x00020000)
out["unshare_newnet"] = sc(272, 0x40000000)
out["clone_newuser"] = sc(56, 0x10000000 | 17, 0, 0, 0, 0)
if out["clone_newuser"] == "ok":
    os._exit(0)  # only reached in the child if the call went through
out["bpf_prog_load"] = sc(321, 5, ctypes.addressof(buf), 128)
out["bpf_map_create"] = sc(321, 0, ctypes.addressof(buf), 128)
params = ctypes.create_string_buffer(120)
out["io_uring_setup"] = sc(425, 8, ctypes.addressof(params))
out["keyctl_join_session"] = sc(250, 1, 0, 0, 0, 0)
out["add_key"] = sc(248, b"user", b"cloche", b"x", 1, -2)
attr = ctypes.create_string_buffer(128)
struct.pack_into("IIQ", attr, 0, 1, 128, 0)  # PERF_TYPE_SOFTWARE, sizeof(attr), PERF_COUNT_SW_CPU_CLOCK
out["perf_event_open"] = sc(298, ctypes.addressof(attr), 0, -1, -1, 0)
out["init_module"] = sc(175, ctypes.addressof(buf), 16, b"")
with open("/usr/bin/true", "rb") as binary:
    out["finit_module"] = sc(313, binary.fileno(), b"", 0)
for kind in ("net", "mnt", "user", "pid"):
    try:
        with open("/proc/1/ns/" + kind, "rb") as ns:
            out["setns_" + kind] = sc(308, ns.fileno(), 0)
    except OSError as exc:
        out["setns_" + kind] = err(exc)  # gVisor shows no namespace files: nothing to join
done = subprocess.run(["unshare", "--user", "--map-root-user", "id", "-u"], capture_output=True, text=True)
out["unshare_binary"] = "ok" if done.returncode == 0 else "exit %d" % done.returncode
print(json.dumps(out))
"""


SERVED_BY_GVISOR = {"ptrace_attach_sibling", "io_uring_setup", "unshare_newns", "unshare_newnet", "unshare_newuser"}


def test_privileged_syscalls_are_refused(server: ServerProcess, api: httpx.Client, box: str, isolation: str) -> None:
    found = jail_python(api, box, SYSCALLS)
    went_through = {name: how for name, how in found.items() if how == "ok"}
    # gVisor's kernel implements these itself, for the code's own processes and namespaces inside the sandbox:
    # they never reach the host's ptrace, io_uring or namespace code, which is what the bwrap filter guards.
    assert set(went_through) <= (SERVED_BY_GVISOR if isolation == "gvisor" else set()), went_through
    syscalls = {name: how for name, how in found.items() if name != "unshare_binary" and how != "ok"}
    if isolation == "bwrap":
        # The seccomp filter answers EPERM; the probes pass valid arguments, so any other errno would mean
        # the call reached the kernel's own checks.
        assert set(syscalls.values()) == {"EPERM"}, syscalls
    else:
        # gVisor's kernel answers each itself (EPERM, or ENOSYS where it has no such call): none reaches the host.
        assert set(syscalls.values()) <= {"EPERM", "ENOSYS", "ENOTSUP", "ENODEV", "EINVAL", "ENOENT", "EACCES"}, (
            syscalls
        )
    assert found["unshare_binary"].startswith("exit ")
    assert_clean(server, api, box)


# --- sockets -----------------------------------------------------------------------------------------------

SOCKETS = r"""
kinds = {
    "af_packet_raw": (17, 3, 0x0300),
    "af_packet_dgram": (17, 2, 0x0300),
    "af_netlink_route": (16, 3, 0),
    "af_netlink_netfilter": (16, 3, 12),
    "af_vsock": (40, 1, 0),
    "af_alg": (38, 5, 0),
    "af_key": (15, 3, 2),
    "af_inet_sock_raw": (2, 3, 1),
    "af_inet_sock_raw_tcp": (2, 3, 6),
    "af_inet6_sock_raw": (10, 3, 58),
}
for name, (family, kind, proto) in kinds.items():
    try:
        socket.socket(family, kind, proto).close()
        out[name] = "ok"
    except OSError as exc:
        out[name] = err(exc)
print(json.dumps(out))
"""


def test_raw_and_kernel_sockets_are_refused(server: ServerProcess, api: httpx.Client, box: str, isolation: str) -> None:
    found = jail_python(api, box, SOCKETS)
    assert len(found) == 10
    if isolation == "bwrap":
        assert set(found.values()) == {"EPERM"}, found
    else:
        # gVisor's own network stack answers: raw and packet sockets need a capability the code lacks, the
        # other families do not exist there, and a route netlink socket talks to gVisor, never to the host.
        raw = {name: how for name, how in found.items() if name != "af_netlink_route"}
        assert set(raw.values()) <= {"EPERM", "EAFNOSUPPORT", "EPROTONOSUPPORT"}, found
    assert_clean(server, api, box)


CONNECT = r"""
for target in sys.argv[1:]:
    kind, _, address = target.partition("=")
    try:
        if kind == "tcp4":
            host, port = address.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=3)
        elif kind == "tcp6":
            sock = socket.socket(socket.AF_INET6)
            sock.settimeout(3)
            sock.connect(("::1", int(address)))
        else:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(3)
            sock.connect("\0" + address)
        sock.sendall(b"escaped\n")
        out[target] = "connected"
        sock.close()
    except OSError as exc:
        out[target] = err(exc) if exc.errno else type(exc).__name__
print(json.dumps(out))
"""


class Listener:
    """A host server socket that counts the connections it accepts."""

    def __init__(self, family: int, address: str | tuple[str, int]) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_host_loopback_and_abstract_sockets_are_unreachable(server: ServerProcess, api: httpx.Client, box: str) -> None:
    tcp = Listener(socket.AF_INET, ("127.0.0.1", 0))
    abstract_name = f"cloche-test-{secrets.token_hex(8)}"
    abstract = Listener(socket.AF_UNIX, "\0" + abstract_name)
    try:
        # The listeners work from the host: refusals below come from the jail, not from dead listeners.
        socket.create_connection(("127.0.0.1", tcp.sock.getsockname()[1]), timeout=3).close()
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect("\0" + abstract_name)
        deadline = time.monotonic() + 5
        while (tcp.accepted, abstract.accepted) != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tcp.accepted, abstract.accepted) == (1, 1)
        targets = [
            f"tcp4=127.0.0.1:{tcp.sock.getsockname()[1]}",
            f"tcp4=127.0.0.1:{server.port}",  # the cloche API itself
            f"tcp4=127.0.0.2:{server.port}",
            f"tcp6={server.port}",
            f"unix={abstract_name}",
        ]
        found = jail_python(api, box, CONNECT, *targets)
        time.sleep(0.3)
        assert (tcp.accepted, abstract.accepted) == (1, 1)  # nothing from the jail arrived
    finally:
        tcp.close()
        abstract.close()
    assert "connected" not in found.values(), found
    assert set(found.values()) <= {"ECONNREFUSED", "ENETUNREACH", "EADDRNOTAVAIL"}, found
    assert_clean(server, api, box)


# --- devices -----------------------------------------------------------------------------------------------

DEVICES = r"""
for path in sys.argv[3:]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        out[path] = "opened:" + os.read(fd, 16).hex()
        os.close(fd)
    except OSError as exc:
        out[path] = err(exc)
block = os.makedev(int(sys.argv[1]), int(sys.argv[2]))
for name, mode, device in [
    ("mknod_mem", 0o20000, os.makedev(1, 1)),
    ("mknod_kmsg", 0o20000, os.makedev(1, 11)),
    ("mknod_block", 0o60000, block),
]:
    for where in ("/tmp", "/sandbox"):
        try:
            os.mknod(where + "/" + name, mode | 0o666, device)
            out[where + "/" + name] = "created"
        except OSError as exc:
            out[where + "/" + name] = err(exc)
            continue
        try:
            fd = os.open(where + "/" + name, os.O_RDONLY | os.O_NONBLOCK)
            out[where + "/" + name] = "opened:" + os.read(fd, 16).hex()
        except OSError as exc:
            out[where + "/" + name + ":open"] = err(exc)
print(json.dumps(out))
"""


def test_host_devices_are_absent_and_cannot_be_made(
    server: ServerProcess, api: httpx.Client, box: str, isolation: str
) -> None:
    root_device = os.stat("/").st_dev
    disk = next((p for p in ("/dev/vda", "/dev/sda", "/dev/nvme0n1") if Path(p).exists()), "/dev/vda")
    devices = ["/dev/kvm", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", disk, "/dev/vda", "/dev/sda"]
    devices += ["/dev/core", "/proc/kcore", "/dev/console", "/dev/tty0", "/dev/fuse", "/dev/net/tun"]
    found = jail_python(api, box, DEVICES, str(os.major(root_device)), str(os.minor(root_device)), *devices)
    opened = {path: how for path, how in found.items() if how.startswith("opened:")}
    assert opened == {}
    if isolation == "bwrap":
        assert {found[path] for path in devices} <= {"ENOENT", "EACCES", "EPERM"}
        assert {how for path, how in found.items() if "mknod" in path} == {"EPERM"}
    else:
        # gVisor's /dev is its own: its tun and fuse refuse the code, and a node made on gVisor's /tmp names
        # one of gVisor's devices, never a host one (opening it fails; on the workspace mknod is refused).
        assert {found[path] for path in devices} <= {"ENOENT", "EACCES", "EPERM", "EBADFD"}
        assert {how for path, how in found.items() if path.startswith("/sandbox/mknod")} == {"EPERM"}
        assert {how for path, how in found.items() if path.endswith(":open")} <= {"ENXIO", "ENODEV", "EPERM"}
    assert_clean(server, api, box)


# --- setuid programs, privileges, user namespaces ----------------------------------------------------------

SETUID = r"""
import shutil, subprocess
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
keys = ("NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Uid", "Gid")
out["status"] = {key: status.get(key, "absent").strip() for key in keys}
out["usr_nosuid"] = any(line.split()[4] == "/usr" and "nosuid" in line.split()[5]
                        for line in open("/proc/self/mountinfo"))
attempts = {
    "su": ["su", "root", "-c", "id -u"],
    "sudo": ["sudo", "-n", "id", "-u"],
    "mount": ["mount", "-t", "tmpfs", "none", "/tmp"],
    "passwd": ["passwd", "-d", "root"],
    "newuidmap": ["newuidmap", "1", "0", "0", "1"],
    "unshare_userns": ["unshare", "--user", "--map-root-user", "id", "-u"],
    "unshare_mount": ["unshare", "--mount", "id", "-u"],
    "pkexec": ["pkexec", "id", "-u"],
}
out["setuid"] = {}
for name, argv in attempts.items():
    if shutil.which(argv[0]) is None:
        out["setuid"][name] = "absent"
        continue
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    out["setuid"][name] = [done.returncode, done.stdout]
out["uid_after"] = [os.getuid(), os.geteuid()]
print(json.dumps(out))
"""


# Under gVisor a nested user (and mount) namespace is gVisor's own: root there is root over nothing of the host.
NAMESPACES_OF_GVISOR = {"unshare_userns", "unshare_mount"}


def test_setuid_programs_and_user_namespaces_gain_nothing(
    server: ServerProcess, api: httpx.Client, box: str, isolation: str
) -> None:
    found = jail_python(api, box, SETUID)
    status = found["status"]
    if isolation == "bwrap":
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"
    else:  # gVisor's /proc shows neither; its seccomp filter is on the Sentry, and the bundle sets noNewPrivileges
        assert status["NoNewPrivs"] in ("1", "absent") and status["Seccomp"] in ("0", "absent")
    caps = {key: int(value, 16) for key, value in status.items() if key.startswith("Cap") and value != "absent"}
    assert isolation == "gvisor" or len(caps) == 5  # gVisor's /proc leaves some of them out
    assert caps == dict.fromkeys(caps, 0)
    assert status["Uid"].split() == ["1000"] * 4 and status["Gid"].split() == ["1000"] * 4
    assert found["usr_nosuid"] is True or isolation == "gvisor"  # gVisor's mountinfo omits it; noNewPrivileges holds
    for name, outcome in found["setuid"].items():
        if outcome == "absent" or (isolation == "gvisor" and name in NAMESPACES_OF_GVISOR):
            continue
        code, stdout = outcome
        assert code != 0, f"{name} succeeded inside the jail: {outcome}"
        assert "0" not in stdout.split(), f"{name} printed uid 0: {outcome}"
    present = [name for name, outcome in found["setuid"].items() if outcome != "absent"]
    assert {"su", "mount", "unshare_userns"} <= set(present)  # the host has them: the probe is not vacuous
    assert found["uid_after"] == [1000, 1000]
    assert_clean(server, api, box)


# --- signalling host processes -----------------------------------------------------------------------------

SIGNALS = r"""
import signal
visible = {int(p) for p in os.listdir("/proc") if p.isdigit()}
targets = [int(a) for a in sys.argv[1:]]
out["visible"] = sorted(visible)
out["kill"] = {}
for pid in targets:
    if pid in visible:
        out["kill"][pid] = "visible"  # a jail process that happens to have this number
        continue
    try:
        os.kill(pid, signal.SIGKILL)
        out["kill"][pid] = "ok"
    except OSError as exc:
        out["kill"][pid] = err(exc)
print(json.dumps(out), flush=True)
"""


def test_host_processes_cannot_be_signalled(server: ServerProcess, api: httpx.Client, box: str) -> None:
    assert server.proc is not None
    uid = host_uid(server, box)
    # A host process of the very same host uid: only the pid namespace keeps the jail from killing it.
    same_uid = subprocess.Popen(["sleep", "300"], user=uid, group=uid, extra_groups=[])
    try:
        key_pids = [same_uid.pid, os.getpid(), server.proc.pid]
        host_pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
        targets = key_pids + [pid for pid in host_pids if pid not in key_pids and pid > 1][:200]
        found = jail_python(api, box, SIGNALS, *map(str, targets))
        kills = {int(pid): how for pid, how in found["kill"].items()}
        assert all(kills[pid] == "ESRCH" for pid in key_pids), kills
        assert "ok" not in kills.values(), kills
        assert sum(how == "ESRCH" for how in kills.values()) >= len(targets) - len(found["visible"])
        # kill(-1, SIGKILL): "every process I may signal" reaches only the jail's own pid namespace.
        last = run(api, box, "python3 -c 'import os, signal; os.kill(-1, signal.SIGKILL)'; sleep 5")
        assert last["status"] in ("failed", "succeeded")
        time.sleep(0.2)
        assert same_uid.poll() is None, "a host process of the sandbox's own uid was killed from the jail"
        assert server.proc.poll() is None
    finally:
        same_uid.kill()
        same_uid.wait()
    assert_clean(server, api, box)


# --- terminals ---------------------------------------------------------------------------------------------

TIOCSTI = r"""
import fcntl, pty, termios
def ioctl(fd, request):
    try:
        fcntl.ioctl(fd, request, b"x")
        return "ok"
    except OSError as exc:
        return err(exc)
for fd in (0, 1, 2):
    out["tiocsti_fd%d" % fd] = ioctl(fd, termios.TIOCSTI)
try:
    os.open("/dev/tty", os.O_RDWR)
    out["dev_tty"] = "opened"
except OSError as exc:
    out["dev_tty"] = err(exc)
out["sid_is_own"] = os.getsid(0) != 0
primary, secondary = pty.openpty()
out["tiocsti_own_pty"] = ioctl(secondary, termios.TIOCSTI)
out["tiocsti_own_pty_high_bits"] = sc(16, secondary, termios.TIOCSTI | 1 << 32, b"x")
out["tioclinux"] = ioctl(secondary, 0x541C)
print(json.dumps(out))
"""


def test_tiocsti_cannot_inject_keystrokes(server: ServerProcess, api: httpx.Client, box: str, isolation: str) -> None:
    found = jail_python(api, box, TIOCSTI)
    injections = {name: how for name, how in found.items() if name.startswith(("tiocsti", "tioclinux"))}
    assert "ok" not in injections.values()
    if isolation == "bwrap":
        assert found["dev_tty"] == "ENXIO"  # --new-session: the jail has no controlling terminal
        # Even on a terminal the jail owns, the filter refuses the request itself.
        assert found["tiocsti_own_pty"] == found["tiocsti_own_pty_high_bits"] == found["tioclinux"] == "EPERM"
    else:  # no controlling terminal either, and gVisor's terminals do not implement the requests at all
        assert found["dev_tty"] in ("ENXIO", "EIO")
        assert found["tiocsti_own_pty"] == found["tioclinux"] == "ENOTTY"
    assert_clean(server, api, box)


# --- what the jail sees of itself --------------------------------------------------------------------------

IDENTITY = r"""
out["cmdline1"] = open("/proc/1/cmdline", "rb").read().decode(errors="replace")
out["sys"] = os.path.exists("/sys")
out["hostname"] = [socket.gethostname(), open("/etc/hostname").read()]
out["passwd"] = open("/etc/passwd").read()
out["group"] = open("/etc/group").read()
out["ids"] = [os.getuid(), os.getgid(), os.stat("/sandbox").st_uid]
out["environ"] = dict(os.environ)
open("/sandbox/made-inside.txt", "w").write("x")
print(json.dumps(out))
"""


def test_identity_is_synthetic_and_leaks_no_host_path(
    server: ServerProcess, api: httpx.Client, box: str, isolation: str
) -> None:
    found = jail_python(api, box, IDENTITY)
    host_paths = [str(server.data_dir), str(server.data_dir / "workspaces" / box), "/work/", ".venv", "site-packages"]
    assert [p for p in host_paths if p in found["cmdline1"]] == []
    assert found["sys"] is (isolation == "gvisor")  # gVisor always shows its own synthetic /sys, never the host's
    assert found["hostname"] == ["sandbox", "sandbox\n"]
    assert found["passwd"] == SYNTHETIC_ETC["passwd"].format(uid=1000)
    assert found["group"] == SYNTHETIC_ETC["group"].format(uid=1000)
    assert found["passwd"] != Path("/etc/passwd").read_text()
    assert found["ids"] == [1000, 1000, 1000]
    environ = json.dumps(found["environ"])
    assert "CLOCHE_" not in environ and str(server.data_dir) not in environ
    # Outside, the workspace and what the code made belong to the sandbox's own host uid, never root.
    uid = host_uid(server, box)
    low, high = server.uid_range
    assert low <= uid < high
    workspace = server.data_dir / "workspaces" / box
    assert (workspace / "made-inside.txt").stat().st_uid == uid
    assert workspace.stat().st_mode & 0o777 == 0o700
    assert_clean(server, api, box)


def test_two_sandboxes_run_as_different_host_uids(
    server: ServerProcess, api: httpx.Client, box: str, victim: tuple[str, str], isolation: str
) -> None:
    other, _ = victim
    uids = {host_uid(server, box), host_uid(server, other)}
    assert len(uids) == 2
    with busy(api, box), busy(api, other):
        live = pool_uids(server)
    if isolation == "bwrap":
        # Both runs were live at once, each under its own uid, and no process ran under any other pool uid.
        assert live == uids
    else:
        # gVisor's processes run as root and nobody, never as a pool uid; what each sandbox writes is its own uid's.
        assert live == set()
        for sid in (box, other):
            assert run(api, sid, "touch /sandbox/mine")["status"] == "succeeded"
        owners = {(server.data_dir / "workspaces" / sid / "mine").stat().st_uid for sid in (box, other)}
        assert owners == uids
    assert_clean(server, api, box)


KERNEL = r"""
out["version"] = open("/proc/version").read()
try:
    with open("/dev/kmsg", "rb") as kmsg:
        out["log"] = kmsg.read(4096).decode(errors="replace")
except OSError as exc:
    out["log"] = err(exc)
print(json.dumps(out))
"""


def test_the_kernel_seen_inside_is_the_tiers(
    server: ServerProcess, api: httpx.Client, box: str, isolation: str
) -> None:
    """Under bwrap the code talks to the host's kernel; under gVisor to gVisor's, which is not the host's and
    whose log is its own (the host's kernel log stays unreadable)."""
    found = jail_python(api, box, KERNEL)
    host = Path("/proc/version").read_text()
    if isolation == "bwrap":
        assert found["version"] == host
        assert found["log"] in ("ENOENT", "EACCES", "EPERM")
    else:
        assert found["version"] != host
        dmesg = run(api, box, "dmesg")
        assert dmesg["status"] == "succeeded", dmesg
        assert "Starting gVisor" in dmesg["stdout"]
        assert os.uname().release not in dmesg["stdout"] + found["version"]
    assert_clean(server, api, box)
