"""The seccomp deny list every jailed process runs under, compiled to classic BPF for ``bwrap --seccomp``.

The filter allows by default and refuses a list of syscalls that a program running as an unprivileged
user never needs but that kernel exploits and namespace escapes lean on. Refused calls fail with
``EPERM`` (``clone3`` with ``ENOSYS``, see below), so well-behaved programs see an ordinary error.
Any syscall made through a foreign ABI (i386 ``int $0x80``, x32) kills the whole process: those entry
points reach the same kernel code under different numbers and would otherwise bypass every rule.

======================================  ===============================================================
Denied                                  Threat
======================================  ===============================================================
ptrace, process_vm_readv/writev         read or rewrite the memory of other processes of the same uid
bpf                                     eBPF verifier/JIT: a large, frequently exploited attack surface
io_uring_setup/enter/register           io_uring: many kernel CVEs; its operations are not seen by seccomp
userfaultfd                             stalls kernel copies at will: the standard race-exploit helper
keyctl, add_key, request_key            kernel keyrings are not namespaced: cross-tenant leaks, CVEs
perf_event_open                         side channels and a long history of perf subsystem exploits
mount, umount2, pivot_root, move_mount, reshaping the filesystem view is how container escapes start
open_tree, fsopen, fsconfig, fsmount,
fspick, mount_setattr
unshare, setns                          new namespaces expose root-only kernel code (netfilter, ...)
clone with any CLONE_NEW* flag          the same as unshare, at fork time
clone3 (ENOSYS)                         its flags sit in memory BPF cannot read; libc falls back to clone
kexec_load, kexec_file_load             replace the running kernel
init_module, finit_module,              load or unload kernel code
delete_module
personality (except 0 and 0xffffffff)   READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO weaken
                                        exploit mitigations; 0 (PER_LINUX) and the query stay allowed
socket (family not UNIX/INET/INET6)     netlink (netfilter, routing), packet, vsock (the VM host), AF_ALG
                                        (kernel crypto): raw kernel interfaces with many CVEs
ioctl TIOCSTI, TIOCLINUX                inject keystrokes into a terminal outside the jail
acct                                    process accounting writes to a host file
swapon, swapoff, reboot                 host-wide state
settimeofday, clock_settime,            set the host clock
adjtimex, clock_adjtime
quotactl                                host quota state, filesystem parsing code
lookup_dcookie                          kernel profiling cookies leak host paths
open_by_handle_at, name_to_handle_at    open files by handle, bypassing the mount view ("shocker" escape)
syslog                                  the kernel log leaks addresses and other tenants' activity
vhangup                                 hang up a terminal
iopl, ioperm                            raw x86 I/O port access
nfsservctl, uselib                      obsolete interfaces, kept only as attack surface
i386 and x32 ABIs (KILL_PROCESS)        alternative syscall tables that would bypass the numbers above
======================================  ===============================================================

Most of these already fail for a process without capabilities; the filter is the second line of
defence that still holds if a kernel bug hands the process a capability or skips a check.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from functools import lru_cache
from typing import Final

import pyseccomp

from cloche.errors import JailUnavailable
from cloche.jail.bwrap import BwrapCommand

_EPERM: Final = pyseccomp.ERRNO(errno.EPERM)

DENIED_SYSCALLS: Final[tuple[str, ...]] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "quotactl",
    "lookup_dcookie",
    "open_by_handle_at",
    "name_to_handle_at",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "nfsservctl",
    "uselib",
)

# <linux/sched.h>. CLONE_NEWTIME (0x80) is deliberately absent: in clone()'s flags that bit belongs to
# the exit signal (CSIGNAL), and the kernel only honours CLONE_NEWTIME through unshare and clone3,
# both of which are refused outright.
CLONE_NEW_FLAGS: Final[dict[str, int]] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

# socket() families a program may create: everything else (AF_NETLINK, AF_PACKET, AF_VSOCK, AF_ALG,
# AF_BLUETOOTH, AF_KEY, ...) is refused. Raw IP sockets need CAP_NET_RAW, which the jail never has.
ALLOWED_SOCKET_FAMILIES: Final = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6
_MAX_ALLOWED_FAMILY: Final = max(ALLOWED_SOCKET_FAMILIES)

TIOCSTI: Final = 0x5412
TIOCLINUX: Final = 0x541C

_PERSONALITY_QUERY: Final = 0xFFFFFFFF
_U32: Final = 0xFFFFFFFF

# Once written, the memfd can neither change nor be unsealed.
_SEALS: Final = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def _known(name: str) -> bool:
    # libseccomp answers a negative pseudo number for syscalls the native arch lacks (iopl on aarch64),
    # which it accepts and ignores; -1 means it has never heard of the name (an old libseccomp).
    number: int = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    return number != -1


def _add_rules(flt: pyseccomp.SyscallFilter) -> None:
    for name in DENIED_SYSCALLS:
        if _known(name):
            flt.add_rule(_EPERM, name)

    # clone3 passes its flags in a struct in memory, which BPF cannot dereference; answering ENOSYS makes
    # glibc (>= 2.34) retry with clone(), whose flags are a register the rules below can inspect.
    if _known("clone3"):
        flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NEW_FLAGS.values():
        # One rule per flag: "flags & FLAG == FLAG". libseccomp ORs the rules of one syscall together.
        flt.add_rule(_EPERM, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))

    # Families are compared as 64-bit values, so a family with stray high bits (which the kernel would
    # truncate to an int) lands in the "> AF_INET6" rule and is refused, never silently let through.
    for family in range(_MAX_ALLOWED_FAMILY):
        if family not in ALLOWED_SOCKET_FAMILIES:
            flt.add_rule(_EPERM, "socket", pyseccomp.Arg(0, pyseccomp.EQ, family))
    flt.add_rule(_EPERM, "socket", pyseccomp.Arg(0, pyseccomp.GT, _MAX_ALLOWED_FAMILY))

    # The kernel reads the ioctl request as a 32-bit int: the mask ignores the upper half, otherwise
    # "TIOCSTI | 1 << 32" would pass the filter and still reach TIOCSTI (CVE-2019-10063).
    for request in (TIOCSTI, TIOCLINUX):
        flt.add_rule(_EPERM, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, _U32, request))

    _add_personality_rules(flt)


def _add_personality_rules(flt: pyseccomp.SyscallFilter) -> None:
    """Refuse every personality value except 0 (PER_LINUX) and 0xffffffff (the query).

    libseccomp cannot compare one argument twice in a rule, and rules for one syscall are ORed, so
    "x not in {0, 0xffffffff}" is built as a union of single masked compares: a 32-bit value that is
    neither all zeros nor all ones has, going round the word, some set bit i followed by a clear bit
    i+1. One rule per i matches exactly that pattern; a 33rd refuses anything above 32 bits.
    """
    for bit in range(32):
        low, high = 1 << bit, 1 << ((bit + 1) % 32)
        flt.add_rule(_EPERM, "personality", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, low | high, low))
    flt.add_rule(_EPERM, "personality", pyseccomp.Arg(0, pyseccomp.GT, _PERSONALITY_QUERY))


@lru_cache(maxsize=1)
def build_filter() -> bytes:
    """The compiled filter: a raw ``struct sock_filter[]``, as ``bwrap --seccomp FD`` reads it."""
    try:
        flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        # Only the native ABI is added to the filter. Any syscall whose audit arch is not native (i386
        # via int $0x80 on x86_64) takes the "bad arch" action; for x86_64 libseccomp also sends syscall
        # numbers with the x32 bit (0x40000000) there. Killing the process is simpler and stricter than
        # mirroring every rule for each foreign ABI, and nothing we run needs them.
        flt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
        _add_rules(flt)
        with tempfile.TemporaryFile() as out:
            flt.export_bpf(out)
            out.seek(0)
            program = out.read()
    except OSError as exc:
        raise JailUnavailable(f"could not compile the seccomp filter with libseccomp: {exc}") from exc
    if not program or len(program) % 8:  # sizeof(struct sock_filter) == 8
        raise JailUnavailable(f"libseccomp produced a malformed BPF program ({len(program)} bytes)")
    return program


def seccomp_fd() -> int:
    """A fresh sealed memfd holding the filter, at offset 0 and inheritable, for ``pass_fds``.

    bwrap reads the fd to its end, so every spawn needs its own; the caller closes it after the spawn.
    The seals make the content immutable, so the fd is harmless if it leaks into another child.
    """
    program = build_filter()
    fd = os.memfd_create("cloche-seccomp", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
    except OSError as exc:
        os.close(fd)
        raise JailUnavailable(f"could not prepare the seccomp memfd: {exc}") from exc
    return fd


def apply(cmd: BwrapCommand) -> None:
    """Hand bwrap the filter on a fresh fd; the runner closes it right after the spawn."""
    fd = seccomp_fd()
    cmd.args += ["--seccomp", str(fd)]
    cmd.pass_fds.append(fd)
