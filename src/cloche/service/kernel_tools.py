"""The kernel tools (ipykernel and its dependencies): one read-only store entry, built once per lock.

Resolved once per server process (the newest release that fits ``kernel.REQUIREMENTS``), built in the install
jail like any environment, sealed in the environment store under a key of its own namespace, and held from
collection while the server runs.
"""

from __future__ import annotations

import asyncio
import logging

from cloche.ecosystems.base import InstallFailed
from cloche.ecosystems.python import kernel
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.errors import JailUnavailable
from cloche.jail.install import InstallJailFactory
from cloche.store.envstore import EnvironmentStore, StoredEnvironment, discard, environment_key

log = logging.getLogger("cloche.contexts")


class KernelTools:
    def __init__(self, python: PythonEcosystem, jails: InstallJailFactory, envs: EnvironmentStore) -> None:
        self.python = python
        self.jails = jails
        self.envs = envs
        self.key: str | None = None  # held from collection once known
        self._lock = asyncio.Lock()

    async def ensure(self) -> StoredEnvironment:
        """The tools' store entry, built on first use; an install that fails is a 503 that says why."""
        async with self._lock:
            if self.key is not None and (found := self.envs.get(self.key)) is not None:
                return found
            try:
                return await self._build()
            except InstallFailed as exc:
                raise JailUnavailable(
                    f"the kernel tools ({', '.join(kernel.REQUIREMENTS)}) could not be installed: {exc.message}"
                ) from exc

    async def _build(self) -> StoredEnvironment:
        async with self.jails.session(self.python, build=True, build_mount=kernel.TOOLS_MOUNT) as jail:
            lock = await self.python.lock_for(kernel.REQUIREMENTS, (), jail, "cloche kernel tools")
            key = environment_key(kernel.TOOLS_ECOSYSTEM, lock.text, self.python.abi())
            found = self.envs.get(key)
            if found is not None and jail.build_dir is not None:
                discard(jail.build_dir)
            if found is None:
                await self.python.install_target(lock, jail)
                assert jail.build_dir is not None
                found = self.envs.put(key, jail.build_dir, {"ecosystem": kernel.TOOLS_ECOSYSTEM, "lock": lock.text})
                log.info("kernel tools installed", extra={"environment": key})
        self.key = key
        return found
