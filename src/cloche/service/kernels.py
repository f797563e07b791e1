"""One kernel process in a sandbox's jail: start it, reach it, link environments into it, stop it.

The kernel is a resident of its sandbox (``service/residents.py``: one jailed run, the sandbox's uid, namespaces,
seccomp filter, egress policy and a cgroup of its own, in a task whose wall clock is the context's lifetime cap).

- Its sockets: the resident's socket folder (``/run/resident`` in the jail). It belongs to the sandbox's uid only
  until the kernel has bound them; then it is handed to root and made read-only for the jail, before any cell
  runs, so nothing in the jail can later swap a socket for a link to something else on the host. The host checks
  each socket after that hand-over and only then connects.
- Its own folder (root's, bound read-only): the connection file, and ``added/``, environments linked in while
  the kernel runs.

Stopping stops the resident (the runner kills the jail's processes and removes the cgroup); the folders go too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cloche.ecosystems.python.kernel import CONNECTION_FILE
from cloche.errors import JailUnavailable
from cloche.jail.profile import RESIDENT_DIR, JailProfile, Mount, RunSpec
from cloche.service.kernel_client import KernelConnection, connection_info, socket_names
from cloche.service.residents import Resident, ResidentEnded, Residents
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
    def __init__(self, residents: Residents, folder: Path, launch: KernelLaunch) -> None:
        self.residents = residents
        self.folder = folder
        self.added = folder / "added"
        self.launch = launch
        self.env_keys = {launch.env_key} if launch.env_key else set()  # what is visible: at start and added
        self.components = dict(launch.components)
        self.connection: KernelConnection | None = None
        self.resident: Resident | None = None
        self.execution_count = 0

    @staticmethod
    def mount(folder: Path, dest: str) -> Mount:
        return Mount("ro-bind", dest, folder)

    def prepare_folder(self) -> None:
        """The host folder before the jail starts: root's, readable by the jail."""
        self.folder.mkdir(mode=0o755)
        self.added.mkdir(mode=0o755)

    async def start(self, sandbox_id: str, label: str, timeout: float) -> None:
        """Start the kernel and connect to it; a kernel that does not come up raises ``JailUnavailable``."""
        jail_info, _ = connection_info(RESIDENT_DIR, Path(RESIDENT_DIR))
        config = self.folder / PurePosixPath(CONNECTION_FILE).name
        config.write_text(json.dumps(jail_info))
        config.chmod(0o644)
        self.resident = await self.residents.start(sandbox_id, "context", self.launch.spec, self.launch.profile, label)
        deadline = time.monotonic() + timeout
        try:
            for name in socket_names():
                await self.resident.wait_for_socket(name, max(deadline - time.monotonic(), 0.1))
            self._hand_over(self.resident.socket_dir)
            host_info = {**jail_info, "ip": str(self.resident.socket_dir / jail_info["ip"].rsplit("/", 1)[1])}
            self.connection = KernelConnection(host_info)
            await self.connection.open(max(deadline - time.monotonic(), 1.0))
        except ResidentEnded as exc:
            await self.stop()
            raise JailUnavailable(f"the kernel ended while starting: {self.death()}") from exc
        except TimeoutError as exc:
            await self.stop()
            raise JailUnavailable(f"the kernel did not start within {timeout:g}s: {self.tail()}") from exc
        except BaseException:
            await self.stop()
            raise

    def _hand_over(self, sockets: Path) -> None:
        """The socket folder becomes root's and read-only for the jail; then each socket must still be one."""
        os.chown(sockets, 0, 0)
        os.chmod(sockets, 0o755)
        uid = self.launch.profile.host_uid
        for name in socket_names():
            info = os.lstat(sockets / name)
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid:
                raise JailUnavailable(f"the kernel's {name} is not a socket it bound; the kernel was stopped")

    def tail(self) -> str:
        return self.resident.log.text()[-TAIL_BYTES:] if self.resident is not None else ""

    @property
    def alive(self) -> bool:
        return self.resident is not None and self.resident.running and self.connection is not None

    def died(self) -> asyncio.Future[Any]:
        assert self.resident is not None and self.resident.task is not None
        return self.resident.task

    def death(self) -> str:
        """Why the kernel's process ended, in words."""
        result = self.resident.result if self.resident is not None else None
        if result is None:
            return "the kernel was stopped"
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
        """End the kernel: its resident is stopped (the runner kills the jail and removes the cgroup)."""
        connection, self.connection = self.connection, None
        if self.resident is not None:
            await self.residents.stop(self.resident.id)
        if connection is not None:  # after the kernel is gone; off the event loop, as closing zmq may wait
            await asyncio.to_thread(connection.close)
        await asyncio.to_thread(safefs.remove_tree, self.folder)
