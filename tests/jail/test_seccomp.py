"""The seccomp filter, loaded by the real bwrap into a jailed Python that tries each refused syscall.

Every probe runs twice: once without the filter (the control) and once with it. Most denied calls also
fail without the filter, for lack of capabilities, so the probes use arguments that make the kernel
itself answer something other than EPERM (EFAULT, EBADF, ESRCH, ...) wherever it can: when the
filtered run says EPERM and the control does not, the filter is what refused the call.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyseccomp
import pytest
from _bwrap import python, require_jail, run_jailed, workspace

from cloche.jail import seccomp

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="probe arguments are x86_64's")

BAD = 0xFFFF_FFFF_FFFF_F000  # a kernel-space pointer: the kernel answers EFAULT when it reads it
NONE = -1  # an fd that is never open
PTRACE_ATTACH = 16
SIGCHLD = 17

# label -> (syscall, args). Labels that start with "clone" may fork: the probe handles both sides.
PROBES: dict[str, tuple[str | int, ...]] = {
    "ptrace": ("ptrace", PTRACE_ATTACH, 999_999, 0, 0),
    "ptrace_attach_init": ("ptrace", PTRACE_ATTACH, 1, 0, 0),
    "process_vm_readv": ("process_vm_readv", 999_999, BAD, 1, BAD, 1, 0),
    "process_vm_writev": ("process_vm_writev", 999_999, BAD, 1, BAD, 1, 0),
    "bpf": ("bpf", 9999, 0, 0),
    "io_uring_setup": ("io_uring_setup", 1, BAD),
    "io_uring_enter": ("io_uring_enter", NONE, 0, 0, 0, 0, 0),
    "io_uring_register": ("io_uring_register", NONE, 0, 0, 0),
    "userfaultfd": ("userfaultfd", 0xFFFF),
    "keyctl": ("keyctl", 9999, 0, 0, 0, 0),
    "add_key": ("add_key", BAD, BAD, 0, 0, 0),
    "request_key": ("request_key", BAD, BAD, 0, 0),
    "perf_event_open": ("perf_event_open", BAD, 0, -1, -1, 0),
    "mount": ("mount", BAD, BAD, BAD, 0, 0),
    "umount2": ("umount2", BAD, 0),
    "pivot_root": ("pivot_root", BAD, BAD),
    "move_mount": ("move_mount", NONE, BAD, NONE, BAD, 0xFFFFFFFF),
    "open_tree": ("open_tree", NONE, BAD, 0xFFFFFFFF),
    "fsopen": ("fsopen", BAD, 0xFFFFFFFF),
    "fsconfig": ("fsconfig", NONE, 0, 0, 0, 0),
    "fsmount": ("fsmount", NONE, 0xFFFFFFFF, 0),
    "fspick": ("fspick", NONE, BAD, 0xFFFFFFFF),
    "mount_setattr": ("mount_setattr", NONE, BAD, 0xFFFFFFFF, 0, 0),
    "unshare_newuser": ("unshare", 0x10000000),
    "unshare_nothing": ("unshare", 0),
    "setns": ("setns", NONE, 0),
    "kexec_load": ("kexec_load", 0, 0, 0, 0),
    "kexec_file_load": ("kexec_file_load", NONE, NONE, 0, 0, 0),
    "init_module": ("init_module", BAD, 0, BAD),
    "finit_module": ("finit_module", NONE, BAD, 0),
    "delete_module": ("delete_module", BAD, 0),
    "acct": ("acct", BAD),
    "swapon": ("swapon", BAD, 0),
    "swapoff": ("swapoff", BAD),
    "reboot": ("reboot", 0, 0, 0, 0),
    "settimeofday": ("settimeofday", BAD, 0),
    "clock_settime": ("clock_settime", 0, BAD),
    "adjtimex": ("adjtimex", BAD),
    "clock_adjtime": ("clock_adjtime", 0, BAD),
    "quotactl": ("quotactl", 0, BAD, 0, 0),
    "lookup_dcookie": ("lookup_dcookie", 0, 0, 0),
    "open_by_handle_at": ("open_by_handle_at", NONE, BAD, 0),
    "name_to_handle_at": ("name_to_handle_at", NONE, BAD, BAD, BAD, 0),
    "syslog": ("syslog", 9999, 0, 0),
    "vhangup": ("vhangup",),
    "iopl": ("iopl", 3),
    "ioperm": ("ioperm", 0, 1, 1),
    "nfsservctl": ("nfsservctl", 0, 0, 0),
    "uselib": ("uselib", BAD),
    "tiocsti": ("ioctl", 0, seccomp.TIOCSTI, BAD),
    "tiocsti_high_bits": ("ioctl", 0, seccomp.TIOCSTI | 1 << 32, BAD),
    "tioclinux": ("ioctl", 0, seccomp.TIOCLINUX, BAD),
    "personality_linux32": ("personality", 0x0008),
    "personality_no_aslr": ("personality", 0x0040000),
    "personality_read_implies_exec": ("personality", 0x0400000),
    "personality_high_bits": ("personality", 1 << 32),
    "socket_netlink": ("socket", 16, 3, 0),
    "socket_packet": ("socket", 17, 3, 0),
    "socket_vsock": ("socket", 40, 1, 0),
    "socket_alg": ("socket", 38, 5, 0),
    "socket_bluetooth": ("socket", 31, 1, 0),
    "socket_unspec": ("socket", 0, 1, 0),
    "socket_inet_high_bits": ("socket", 2 | 1 << 32, 1, 0),
    **{
        f"clone_{name.removeprefix('CLONE_').lower()}": ("clone", flag | SIGCHLD, 0, 0, 0, 0)
        for name, flag in seccomp.CLONE_NEW_FLAGS.items()
    },
}
ALLOWED: dict[str, tuple[str | int, ...]] = {
    "personality_default": ("personality", 0),
    "personality_query": ("personality", 0xFFFFFFFF),
    "socket_unix": ("socket", 1, 1, 0),
    "socket_inet": ("socket", 2, 1, 0),
    "socket_inet6": ("socket", 10, 2, 0),
    "clone_plain": ("clone", SIGCHLD, 0, 0, 0, 0),
}
# Calls whose control answer does not depend on sysctls or kernel config: the filter must change it.
MUST_DIFFER = (
    "ptrace",
    "process_vm_readv",
    "keyctl",
    "add_key",
    "mount",
    "unshare_newuser",
    "unshare_nothing",
    "setns",
    "name_to_handle_at",
    "tiocsti",
    "tiocsti_high_bits",
    "personality_linux32",
    "personality_high_bits",
    "socket_netlink",
    "socket_inet_high_bits",
)

PROBE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
for label, (nr, *args) in json.loads(sys.argv[1]).items():
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) for a in args])
    err = ctypes.get_errno()
    if label.startswith("clone") and ret == 0:
        os._exit(0)  # the child of a clone that went through
    if label.startswith("clone") and ret > 0:
        os.waitpid(ret, 0)
    out[label] = "ok" if ret >= 0 else errno.errorcode.get(err, str(err))
print(json.dumps(out))
"""


def _probe(ws: Path, calls: dict[str, tuple[str | int, ...]], *, filtered: bool) -> dict[str, str]:
    spec = {
        label: [pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, str(name)), *args]
        for label, (name, *args) in calls.items()
    }
    done = run_jailed(python(PROBE, json.dumps(spec)), ws, seccomp=filtered)
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def ws() -> Iterator[Path]:
    require_jail()
    with workspace() as path:
        yield path


@pytest.fixture(scope="module")
def control(ws: Path) -> dict[str, str]:
    # Unfiltered, PTRACE_ATTACH to the jail's init succeeds and stops it, hanging the jail: skip it.
    calls = {label: call for label, call in PROBES.items() if label != "ptrace_attach_init"}
    return _probe(ws, {**calls, **ALLOWED}, filtered=False)


@pytest.fixture(scope="module")
def filtered(ws: Path) -> dict[str, str]:
    return _probe(ws, {**PROBES, **ALLOWED}, filtered=True)


def test_filter_is_raw_sock_filter_array_and_cached() -> None:
    program = seccomp.build_filter()
    assert program and len(program) % 8 == 0
    assert seccomp.build_filter() is program


def test_seccomp_fd_is_sealed_inheritable_and_rewound() -> None:
    fd = seccomp.seccomp_fd()
    try:
        assert os.get_inheritable(fd)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
        assert os.read(fd, 1 << 20) == seccomp.build_filter()
    finally:
        os.close(fd)


def test_filter_is_loaded(ws: Path) -> None:
    done = run_jailed(python("print(open('/proc/self/status').read())"), ws)
    assert done.returncode == 0, done.stderr
    assert "Seccomp:\t2" in done.stdout


@pytest.mark.parametrize("label", sorted(PROBES))
def test_denied_syscall_fails_with_eperm(filtered: dict[str, str], label: str) -> None:
    assert filtered[label] == "EPERM"


def test_clone3_answers_enosys(ws: Path) -> None:
    # clone3(NULL, 0) is EINVAL unfiltered; ENOSYS is the filter speaking, telling libc to use clone.
    calls: dict[str, tuple[str | int, ...]] = {"clone3": ("clone3", 0, 0)}
    assert _probe(ws, calls, filtered=False)["clone3"] == "EINVAL"
    assert _probe(ws, calls, filtered=True)["clone3"] == "ENOSYS"


@pytest.mark.parametrize("label", MUST_DIFFER)
def test_control_run_proves_the_filter_refused(control: dict[str, str], label: str) -> None:
    assert control[label] != "EPERM"


@pytest.mark.parametrize("label", sorted(ALLOWED))
def test_allowed_calls_still_work(filtered: dict[str, str], label: str) -> None:
    assert filtered[label] == "ok"


def test_threads_subprocess_and_sockets_work(ws: Path) -> None:
    code = """
import socket, subprocess, threading
box = []
t = threading.Thread(target=lambda: box.append(1)); t.start(); t.join()
assert box == [1]
assert subprocess.run(["/usr/bin/true"]).returncode == 0
assert subprocess.run(["/bin/sh", "-c", "echo hi | cat"], capture_output=True, text=True).stdout == "hi\\n"
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
    socket.socket(family, socket.SOCK_STREAM).close()
a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
for family in (socket.AF_NETLINK, socket.AF_PACKET, socket.AF_VSOCK, socket.AF_ALG):
    try:
        socket.socket(family, socket.SOCK_RAW if family != socket.AF_ALG else socket.SOCK_SEQPACKET)
    except PermissionError:
        pass
    else:
        raise SystemExit(f"family {family} was allowed")
print("fine")
"""
    done = run_jailed(python(code), ws)
    assert (done.returncode, done.stdout.strip()) == (0, "fine"), done.stderr


def test_x32_syscall_kills_the_process(ws: Path) -> None:
    # getpid through the x32 table (syscall number | __X32_SYSCALL_BIT), made in a forked child so the
    # parent can report how it died.
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:
    libc.syscall(ctypes.c_long(39 | 0x40000000))
    os._exit(0)
print(os.waitpid(pid, 0)[1])
"""
    done = run_jailed(python(code), ws)
    assert done.returncode == 0, done.stderr
    status = int(done.stdout)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


I386_GETPID = r"""
int main(void) {
    long ret;
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "memory");  /* i386 getpid */
    return ret > 0 ? 0 : 1;
}
"""


def test_i386_syscall_kills_the_process(ws: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    (ws / "i386.c").write_text(I386_GETPID)
    subprocess.run([gcc, "-O0", "-o", str(ws / "i386"), str(ws / "i386.c")], check=True, timeout=120)
    code = "import subprocess; print(subprocess.run(['/sandbox/i386']).returncode)"
    unfiltered = run_jailed(python(code), ws, seccomp=False)
    if unfiltered.stdout.strip() != "0":
        pytest.skip(f"the kernel has no working i386 emulation ({unfiltered.stdout.strip()})")
    done = run_jailed(python(code), ws)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == -signal.SIGSYS
