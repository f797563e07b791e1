"""The gVisor tier: the bwrap tier's view of the system, but every system call is served by gVisor's kernel.

``GvisorJail.start`` is this tier's checklist, numbered like the bwrap tier's so the two read side by side
(7, the cgroup, is the runner's and the same for every tier). Everything goes into one OCI bundle
(``gvisor_bundle.py``) that ``runsc run`` starts:

1. identity: uid/gid 1000 inside, mapped to the sandbox's own host uid; no capabilities, no new privileges;
   the hostname ``sandbox``; gVisor's own pid, ipc, uts, mount and network namespaces
2. filesystem (``mounts.view``): the same read-only system, synthetic /etc, workspace, private /tmp and
   profile mounts as bwrap, with gVisor's own /proc and /dev (and ``gvisor_compat_jail.c``, preloaded: the
   packaged runsc refuses a statx flag coreutils always pass)
3. environment (``environment.py``): the same cleared, explicit variables and working directory
4. network (``egress_layer.py``): ``--network=none`` (a loopback only); with egress, the same host proxy,
   its socket reached through ``--host-uds`` by the same in-jail launcher (host sockets are allowed only for
   runs that have one: egress, or a resident's socket folder)
5. system calls: served by the Sentry, gVisor's kernel in Go, which itself runs under runsc's seccomp
   filter; the code never reaches the host kernel's system call table
6. sealed root: the bundle's root is read-only and holds nothing but mount points
7. cgroup: runsc joins the run's cgroup before it execs, and ``--ignore-cgroups`` keeps it (and the Sentry and
   Gofer it starts) there, so the same memory, pids and CPU limits bind the whole sandbox
8. rlimits: file size, open files, processes and core files in the bundle, enforced by the Sentry

Why ``runsc run`` with a bundle and not ``runsc do``: ``do`` shows the host's whole root (read-only) and
takes no mount list, uid mapping or rlimits; a bundle states all of them. Why runsc is started as root and
not ``--rootless``: rootless runsc cannot map uid 1000 inside to the sandbox's host uid, so the code would
write its workspace as another uid; as root, runsc itself drops privileges (the Sentry runs as ``nobody`` in
a user namespace of its own, the Gofer as the mapped ``nobody`` with capabilities over its namespace only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cloche.errors import JailUnavailable
from cloche.jail import egress_layer, environment, gvisor_bundle, mounts
from cloche.jail.c_programs import compile_once
from cloche.jail.cgroups import RunCgroup
from cloche.jail.profile import JailProfile, Mount, ResourceLimits, RunSpec
from cloche.jail.tier import Isolation, Started, TierHost
from cloche.store import safefs

log = logging.getLogger("cloche.jail")
Platform = Literal["ptrace", "kvm"]
HostSockets = Literal["open", "all"]  # runsc's --host-uds: connect only, or create too
PROBE_TIMEOUT: Final = 30.0
# gVisor connects to the proxy's socket from its own host uid (nobody), so the socket admits others too; its
# folder (0711, named with 64 random bits) is what keeps everyone else from finding it.
SOCKET_MODE: Final = 0o606
# Host tasks gVisor needs in the run's cgroup: runsc, the Gofer and the Sentry's Go runtime (about 40 at rest,
# with room for its growth), and under the ptrace platform host threads and stub processes for each task of the
# code. A fork bomb still outgrows any such room (the Sentry's host tasks for 64 of the code's reached 768): the
# host limit then ends the whole sandbox, which is how a gVisor fork bomb ends (``failed``, not ``timed_out``).
GVISOR_THREADS: Final = 256
STUBS_PER_TASK: Final = 3
HOW_TO_INSTALL: Final = "install it with 'apt-get install runsc' (Debian 12 and later; 'make runsc' does)"


COMPAT_SOURCE: Final = Path(__file__).with_name("gvisor_compat_jail.c")
COMPAT_LIBRARY: Final = "/opt/cloche/gvisor-compat.so"


def runsc_path() -> Path | None:
    found = shutil.which("runsc")
    return Path(found) if found is not None else None


def build_compat(jail_dir: Path) -> tuple[Mount, ...]:
    """Compile the statx shim (``gvisor_compat_jail.c``) and the ``/etc/ld.so.preload`` naming it: the mounts
    that place both in every gVisor jail, or none (coreutils then fail there) when no compiler works."""
    library = compile_once(COMPAT_SOURCE, jail_dir / "bin", "cloche-gvisor-compat", ("-shared", "-fPIC"))
    if library is None:
        log.warning("the gVisor statx shim is not built: ls, stat and cp fail in gVisor jails")
        return ()
    preload = jail_dir / "gvisor-ld.so.preload"
    preload.write_text(COMPAT_LIBRARY + "\n")
    preload.chmod(0o644)
    return (Mount("ro-bind", COMPAT_LIBRARY, library), Mount("ro-bind", "/etc/ld.so.preload", preload))


@dataclass(frozen=True)
class GvisorOptions:
    """What the gVisor tier is built with beyond the ``TierHost`` every tier shares."""

    probe_uid: int  # the preflight's host uid: never a sandbox's while idle
    platform: Platform = "ptrace"
    compat: tuple[Mount, ...] = ()  # what ``build_compat`` made: mounts every gVisor jail gets
    runsc: Path | None = None  # None: the runsc on PATH


class GvisorJail:
    """Starts ``runsc run`` on a per-run OCI bundle; the code inside talks to gVisor's kernel only."""

    def __init__(self, host: TierHost, options: GvisorOptions) -> None:
        self._host = host
        self._options = options
        self._runsc = options.runsc or runsc_path()
        self._verdict: str | None = None
        self._checked = False
        self._checking = asyncio.Lock()

    @property
    def isolation(self) -> Isolation:
        return "gvisor"

    async def unavailable(self) -> str | None:
        """Whether runsc is installed and starts a sandbox here, found out at first use and then remembered."""
        async with self._checking:
            if not self._checked:
                self._verdict = await self._probe()
                self._checked = True
        return self._verdict

    def cgroup_limits(self, limits: ResourceLimits) -> ResourceLimits:
        """runsc, the Gofer and the Sentry are host threads in the run's group: the pids limit leaves them room,
        while the code's own processes are counted by the Sentry (RLIMIT_NPROC in the bundle)."""
        return dataclasses.replace(limits, pids=limits.pids * STUBS_PER_TASK + GVISOR_THREADS)

    async def start(
        self, spec: RunSpec, profile: JailProfile, group: RunCgroup, release: contextlib.AsyncExitStack
    ) -> Started:
        """The checklist (see the module docstring), into one bundle, then ``runsc run``."""
        bundle = self._bundle_dir(release)
        placed = [*mounts.view(profile, self._host.synthetic_etc), *self._options.compat]  # 2. filesystem
        env = environment.variables(spec)  # 3. environment
        plumbing = await egress_layer.open_session(profile, self._host.egress, release, socket_mode=SOCKET_MODE)  # 4.
        launcher: list[str] = []
        if plumbing is not None:
            placed += plumbing.mounts
            env |= plumbing.env
            launcher = list(plumbing.launcher)
        gvisor_bundle.rootfs(bundle, placed)  # 6. sealed root: mount points only, read-only
        document = gvisor_bundle.config(  # 1. identity, 8. rlimits (5: the Sentry serves every system call)
            spec, profile, placed, env, [*launcher, *spec.argv], self._host.jail_uid
        )
        gvisor_bundle.write(bundle, document)
        # Host unix sockets: none, or connecting to the proxy's (egress), or binding in a resident's socket folder.
        sockets: HostSockets | None = "all" if profile.socket_dir else "open" if plumbing else None
        argv = self._argv(bundle, host_sockets=sockets)
        process = await self._host.children.track(self._spawn(argv, group, stdin=spec.stdin is not None))  # 7. cgroup
        return Started(process, plumbing.session if plumbing is not None else None)

    async def _spawn(self, argv: list[str], group: RunCgroup, *, stdin: bool) -> asyncio.subprocess.Process:
        """Start runsc as root in a session of its own; the child joins the run's cgroup before it execs."""
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                executable=str(self._binary()),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                start_new_session=True,
                preexec_fn=group.preexec_attach,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise JailUnavailable(f"could not start runsc at {self._runsc}: {exc}") from exc

    def _binary(self) -> Path:
        if self._runsc is None:
            raise JailUnavailable(f"runsc (gVisor) is not installed: {HOW_TO_INSTALL}")
        return self._runsc

    def _bundle_dir(self, release: contextlib.AsyncExitStack) -> Path:
        bundle = self._host.egress.run_dir / f"gvisor-{secrets.token_hex(8)}"
        bundle.mkdir(mode=0o711)
        release.callback(safefs.remove_tree, bundle)
        (bundle / "state").mkdir(mode=0o700)
        return bundle

    def _argv(self, bundle: Path, *, host_sockets: HostSockets | None) -> list[str]:
        platform = f"--platform={self._options.platform}"
        flags = [f"--root={bundle / 'state'}", "--network=none", "--ignore-cgroups", platform]
        if host_sockets is not None:
            flags.append(f"--host-uds={host_sockets}")
        return ["runsc", *flags, "run", "--bundle", str(bundle), bundle.name]

    async def _probe(self) -> str | None:
        """Start one sandbox running /bin/true; None when it succeeds, else why it did not."""
        if self._runsc is None or not self._runsc.is_file():
            return f"runsc (gVisor) is not installed{f' at {self._runsc}' if self._runsc else ''}: {HOW_TO_INSTALL}"
        probe = JailProfile(name="exec", host_uid=self._options.probe_uid)
        spec = RunSpec(argv=("/usr/bin/true",))
        async with contextlib.AsyncExitStack() as release:
            bundle = self._bundle_dir(release)
            placed = mounts.view(probe, self._host.synthetic_etc)
            gvisor_bundle.rootfs(bundle, placed)
            env = environment.variables(spec)
            gvisor_bundle.write(
                bundle, gvisor_bundle.config(spec, probe, placed, env, list(spec.argv), self._host.jail_uid)
            )
            proc = await asyncio.create_subprocess_exec(
                *self._argv(bundle, host_sockets=None),
                executable=str(self._runsc),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # runsc and the Sentry and Gofer it started
                await proc.wait()
                return (
                    f"runsc did not start a sandbox within {PROBE_TIMEOUT:g}s on the {self._options.platform!r} "
                    "platform (try CLOCHE_GVISOR_PLATFORM=ptrace)"
                )
            finally:
                self._host.children.reap()
        if proc.returncode != 0:
            detail = out.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return f"runsc could not start a sandbox (exit {proc.returncode}): {detail[0]}"
        return None
