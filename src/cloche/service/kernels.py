"""One kernel process in a sandbox's jail: start it, reach it, link environments into it, stop it.

The kernel is a jailed run like any other (``Runner.run``: the sandbox's uid, namespaces, seccomp filter, egress
policy and a cgroup of its own), started in a task of its own whose wall clock is the context's lifetime cap.
Its host folder holds two things the jail sees:

- ``sockets/`` (bound read-write at ``/run/cloche``): the connection file, and the unix sockets the kernel binds.
  It belongs to the sandbox's uid only until those sockets exist; then it is handed to root and made read-only
  for the jail, before any cell runs, so nothing in the jail can later swap a socket for a link to something
  else on the host. The host checks each socket after that hand-over and only then connects.
- ``added/`` (root's, bound read-only): environments linked in while the kernel runs.

Stopping cancels the run: the runner kills the jail's processes and removes its cgroup; the folder goes too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloche.errors import JailUnavailable
from cloche.jail.profile import JailProfile, Mount, RunSpec
from cloche.jail.runner import Runner, RunResult, StreamName
from cloche.service.kernel_client import KernelConnection, connection_info, socket_names
from cloche.store import safefs

log = logging.getLogger("cloche.contexts")
TAIL_BYTES = 4096  # of the kernel process's own output, kept to explain a crash


@dataclass(frozen=True)
class KernelLaunch:
    """What to start: the run (argv, environment, limits, lifetime), the jail, and the environment it sees."""

    spec: RunSpec
    profile: JailProfile
    env_key: str | None  # the sandbox environment mounted at start (None: none)
    components: dict[str, str] = field(default_factory=dict)  # package -> version the kernel can import


class Kernel:
    def __init__(self, runner: Runner, folder: Path, launch: KernelLaunch) -> None:
        self.runner = runner
        self.folder = folder
        self.sockets = folder / "sockets"
        self.added = folder / "added"
        self.launch = launch
        self.env_keys = {launch.env_key} if launch.env_key else set()  # what is visible: at start and added
        self.components = dict(launch.components)
        self.connection: KernelConnection | None = None
        self.task: asyncio.Task[RunResult] | None = None
        self.execution_count = 0
        self._tail: collections.deque[str] = collections.deque(maxlen=64)

    @staticmethod
    def mounts(folder: Path, connection_dir: str, added_dir: str) -> tuple[Mount, ...]:
        return (Mount("bind", connection_dir, folder / "sockets"), Mount("ro-bind", added_dir, folder / "added"))

    def prepare_folder(self) -> None:
        """The host folder before the jail starts (see the module docstring)."""
        uid = self.launch.profile.host_uid
        self.folder.mkdir(mode=0o711)
        self.sockets.mkdir(mode=0o700)
        os.chown(self.sockets, uid, uid)
        self.added.mkdir(mode=0o755)

    async def start(self, connection_dir: str, connection_file: str, timeout: float) -> None:
        """Start the kernel and connect to it; a kernel that does not come up raises ``JailUnavailable``."""
        jail_info, host_info = connection_info(connection_dir, self.sockets)
        config = self.sockets / os.path.basename(connection_file)
        config.write_text(json.dumps(jail_info))
        config.chmod(0o644)
        self.task = asyncio.create_task(self.runner.run(self.launch.spec, self.launch.profile, self._keep))
        deadline = time.monotonic() + timeout
        try:
            await self._sockets_bound(deadline)
            self._hand_over()
            self.connection = KernelConnection(host_info)
            await self.connection.open(max(deadline - time.monotonic(), 1.0))
        except BaseException:
            await self.stop()
            raise

    async def _keep(self, _: StreamName, text: str) -> None:
        self._tail.append(text)

    def tail(self) -> str:
        return "".join(self._tail)[-TAIL_BYTES:]

    async def _sockets_bound(self, deadline: float) -> None:
        names = socket_names()
        while not all(_is_socket(self.sockets / n) for n in names):
            if self.task is not None and self.task.done():
                raise JailUnavailable(f"the kernel ended while starting: {self.death()}")
            if time.monotonic() > deadline:
                raise JailUnavailable(f"the kernel did not start in time; it printed:\n{self.tail()}")
            await asyncio.sleep(0.02)

    def _hand_over(self) -> None:
        """The socket folder becomes root's and read-only for the jail; then each socket must still be one."""
        os.chown(self.sockets, 0, 0)
        os.chmod(self.sockets, 0o755)
        uid = self.launch.profile.host_uid
        for name in socket_names():
            info = os.lstat(self.sockets / name)
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid:
                raise JailUnavailable(f"the kernel's {name} is not a socket it bound; the kernel was stopped")

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done() and self.connection is not None

    def died(self) -> asyncio.Future[RunResult]:
        assert self.task is not None
        return self.task

    def death(self) -> str:
        """Why the kernel's process ended, in words."""
        if self.task is None or not self.task.done() or self.task.cancelled():
            return "the kernel was stopped"
        exc = self.task.exception()
        if exc is not None:
            return f"the kernel could not run: {exc}"
        result = self.task.result()
        why = result.error or f"the kernel exited with code {result.exit_code}"
        tail = self.tail().strip()
        return f"{why}\n{tail}" if tail else why

    def link(self, environment: Path, site: Path, folder: str) -> None:
        """Hard-link an environment's site-packages into ``added/<folder>`` (same relative path): a sealed
        store entry's files, so nothing is copied and nothing is writable."""
        source = environment / site
        target = self.added / folder / site
        with contextlib.suppress(FileExistsError):
            for top, dirs, files in os.walk(source):
                here = target / os.path.relpath(top, source)
                here.mkdir(mode=0o755, parents=True, exist_ok=True)
                for name in files:
                    path = os.path.join(top, name)
                    if os.path.islink(path):
                        os.symlink(os.readlink(path), here / name)
                    else:
                        os.link(path, here / name)
                for name in dirs:
                    path = os.path.join(top, name)
                    if os.path.islink(path):
                        os.symlink(os.readlink(path), here / name)

    async def stop(self) -> None:
        """End the kernel: its run is cancelled (the runner kills the jail and removes the cgroup)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await asyncio.to_thread(safefs.remove_tree, self.folder)


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False
