"""After-build companions (Python's precompiled bytecode): store entries derived from a sealed environment, built in
the background off the exec's path, and rebuilt at start-up for bound environments a crash left without one. A
missing companion costs speed only; runs use it once it has landed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

from cloche.ecosystems.base import Ecosystem
from cloche.jail.install import InstallJailFactory
from cloche.jail.profile import Mount
from cloche.metrics import Metrics
from cloche.store.envstore import EnvironmentStore, companion_key

log = logging.getLogger("cloche.deps")


class Companions:
    def __init__(self, envs: EnvironmentStore, jails: InstallJailFactory, metrics: Metrics) -> None:
        self.envs = envs
        self.jails = jails
        self.metrics = metrics
        self.background: set[asyncio.Task[None]] = set()  # builds running off the exec's path

    def start(self, key: str, ecosystem: Ecosystem, environment: Path) -> bool:
        """Build the companion of the environment ``key`` in the background, unless the ecosystem has none or it
        is in the store already."""
        companion = ecosystem.companion
        if companion is None or self.envs.get(companion_key(key)) is not None:
            return False

        async def build() -> None:
            try:
                readonly = (Mount("ro-bind", ecosystem.env_mount, environment),)
                session = self.jails.session(ecosystem, build=True, build_mount=companion.mount, mounts=readonly)
                async with session as jail:
                    if await companion.build(jail) and jail.build_dir is not None:
                        self.envs.put(companion_key(key), jail.build_dir, {"ecosystem": ecosystem.name, "of": key})
                        self.metrics.store_changed()
            except Exception:  # a missing companion only costs speed; the environment itself is complete
                log.exception("companion build failed", extra={"env_key": key, "ecosystem": ecosystem.name})

        task = asyncio.create_task(build())
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return True

    def repair(self, keys: Iterable[str], ecosystems: Iterable[Ecosystem]) -> list[str]:
        """At start-up: start the companion of every environment in ``keys`` that has none (nothing else would
        ever build it); returns the keys."""
        by_name = {e.name: e for e in ecosystems}
        repaired = []
        for key in sorted(keys):
            stored = self.envs.get(key)
            ecosystem = by_name.get(str(stored.meta.get("ecosystem"))) if stored is not None else None
            if stored is None or ecosystem is None:
                continue
            if self.start(key, ecosystem, stored.path):
                repaired.append(key)
        return repaired
