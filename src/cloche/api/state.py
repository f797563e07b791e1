"""What the app holds for its lifetime: settings, stores, services, the runner, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from cloche.jail import preflight
from cloche.jail.mounts import write_synthetic_etc
from cloche.jail.runner import Runner
from cloche.paths import DataPaths
from cloche.service.execute import ExecService
from cloche.service.files import FileService
from cloche.service.sandboxes import SandboxService
from cloche.settings import Settings
from cloche.store.sqlite import SqliteMetadataStore

log = logging.getLogger("cloche.server")


@dataclass
class AppState:
    settings: Settings
    paths: DataPaths
    store: SqliteMetadataStore
    runner: Runner
    sandboxes: SandboxService
    files: FileService
    execs: ExecService
    api_keys: dict[str, str]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        paths = DataPaths(settings.data_dir)
        paths.create()
        etc = write_synthetic_etc(paths.jail, settings.sandbox_uid)
        runner = Runner(etc, settings.sandbox_uid)
        store = SqliteMetadataStore(paths.db)
        sandboxes = SandboxService(settings, paths, store)
        return cls(
            settings=settings,
            paths=paths,
            store=store,
            runner=runner,
            sandboxes=sandboxes,
            files=FileService(sandboxes),
            execs=ExecService(sandboxes, runner),
            api_keys=settings.parsed_api_keys(),
        )

    async def start(self) -> None:
        await preflight.check(self.runner, self.paths, self.settings)  # no jail, no server
        await self.sandboxes.reconcile()
        self.tasks.append(asyncio.create_task(self._housekeeping()))

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval_seconds)
            try:
                await self.sandboxes.reap_expired()
                self.runner.reap()
            except Exception:  # keep the loop alive; the next tick retries
                log.exception("housekeeping failed")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.store.close()
