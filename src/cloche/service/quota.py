"""The workspace quota (bytes and files per sandbox): how it is enforced and how much room is left.

Where loop devices work, each workspace is its own volume (``store/volumes.py``) and the kernel enforces the
quota: a write past it fails with ENOSPC inside the run, which goes on and sees the error. Elsewhere the
workspace is measured by walking it (``walk``): about once a second during a run, once before it starts (a
workspace over its quota runs nothing) and once after it ends (the last writes still decide). Which one a
sandbox has follows from what it was created with: an image on disk means a volume.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from cloche.errors import JailUnavailable, TooLarge
from cloche.paths import DataPaths
from cloche.settings import Settings
from cloche.store import safefs
from cloche.store.metadata import SandboxRow
from cloche.store.volumes import WorkspaceVolumes, is_mounted, unavailable_reason, usage

log = logging.getLogger("cloche.quota")

Watchdog = Callable[[], Awaitable[str | None]]


class WorkspaceQuota:
    def __init__(self, settings: Settings, paths: DataPaths) -> None:
        self.settings = settings
        self.paths = paths
        self.volumes = WorkspaceVolumes(paths.volumes)
        self.by_volume = settings.workspace_quota != "walk"  # settled by choose() at start-up

    def choose(self) -> None:
        """Settle whether new workspaces get a volume; refuse to start when ``volume`` was asked and cannot work."""
        mode = self.settings.workspace_quota
        reason = None if mode == "walk" else unavailable_reason(self.paths.tmp)
        self.by_volume = mode != "walk" and reason is None
        if reason is not None and mode == "volume":
            raise JailUnavailable(
                f"CLOCHE_WORKSPACE_QUOTA=volume cannot work on this host: {reason}; fix that, or set "
                "CLOCHE_WORKSPACE_QUOTA=walk (weaker: a run may overshoot the quota by about a second of writes)"
            )
        if reason is not None:
            log.warning("workspace volumes unavailable: quotas are enforced by walking", extra={"reason": reason})
        log.info("workspace quota", extra={"enforced_by": "volume" if self.by_volume else "walk"})

    def quota_bytes(self, row: SandboxRow) -> int:
        asked = row.limits.get("disk_mb") or self.settings.default_disk_mb
        return int(min(asked, self.settings.max_disk_mb)) * 1024 * 1024

    def kernel_enforced(self, row: SandboxRow) -> bool:
        return self.volumes.exists(row.id)

    # workspaces (blocking: call in a thread)

    def make_workspace(self, row: SandboxRow) -> None:
        workspace = self.paths.workspace(row.id)
        if self.by_volume:
            self.volumes.create(row.id, workspace, self.quota_bytes(row), self.settings.workspace_inodes, row.host_uid)
            return
        workspace.mkdir(mode=0o700)
        os.chown(workspace, row.host_uid, row.host_uid)

    def remove_workspace(self, sandbox_id: str) -> None:
        workspace = self.paths.workspace(sandbox_id)
        self.volumes.destroy(sandbox_id, workspace)
        if workspace.exists():  # a walked workspace: its files are removed without following a link
            safefs.remove_tree(workspace)

    def reconcile(self, live: set[str]) -> int:
        """After a crash: remove half-built images and volumes of deleted sandboxes; mount every live one.

        A live workspace that cannot be mounted stops the start-up: serving it unmounted would lose its files.
        """
        removed = self.volumes.remove_partial()
        for sandbox_id in self.volumes.sandbox_ids():
            if sandbox_id in live:
                self.volumes.mount(sandbox_id, self.paths.workspace(sandbox_id))
            else:
                self.remove_workspace(sandbox_id)
                removed += 1
        return removed

    def unmount_all(self) -> None:
        for sandbox_id in self.volumes.sandbox_ids():
            try:
                self.volumes.unmount(self.paths.workspace(sandbox_id))
            except JailUnavailable as exc:
                log.error("workspace not unmounted", extra={"sandbox_id": sandbox_id, "error": exc.message})

    # measuring

    def over_quota(self, row: SandboxRow, incoming: int = 0, files: int = 0) -> str | None:
        """Why the workspace is (or would be, with ``incoming`` bytes in ``files`` more files) over its quota."""
        workspace = self.paths.workspace(row.id)
        quota = self.quota_bytes(row)
        if self.kernel_enforced(row):
            if not is_mounted(workspace):
                return "the workspace volume is not mounted"  # fail closed; start-up mounts every live one
            room = usage(workspace)
            if incoming > room.free_bytes:
                free = room.free_bytes
                return f"{incoming} bytes do not fit: {free} bytes are free of the {quota // 2**20} MiB disk quota"
            if files > room.free_inodes:
                return f"{files} files do not fit: the workspace is at its limit of {self.settings.workspace_inodes}"
            return None
        try:
            used, inodes = safefs.tree_usage(workspace)
        except TooLarge as exc:
            # Too deep to measure: a workspace whose size cannot be checked counts as over quota (otherwise
            # nesting past the walk's depth limit would switch the quota off for every run).
            return f"the workspace cannot be measured for its disk quota: {exc.message}"
        if used + incoming > quota:
            return f"the workspace would hold {used + incoming} bytes, over its {quota // 2**20} MiB disk quota"
        if inodes + files > self.settings.workspace_inodes:
            return f"the workspace holds {inodes} files, over its limit of {self.settings.workspace_inodes}"
        return None

    def room_bytes(self, row: SandboxRow) -> int:
        workspace = self.paths.workspace(row.id)
        if self.kernel_enforced(row):
            return usage(workspace).free_bytes
        used, _ = safefs.tree_usage(workspace)
        return max(self.quota_bytes(row) - used, 0)

    # runs

    def watchdog(self, row: SandboxRow) -> Watchdog | None:
        """The runner's once-a-second check while a run lives; none where the kernel enforces the quota."""
        if self.kernel_enforced(row):
            return None
        return lambda: asyncio.to_thread(self.over_quota, row)

    async def verdict(self, row: SandboxRow) -> str | None:
        """Before and after a run on a walked workspace: a reason to refuse it (or stop counting it as ok)."""
        if self.kernel_enforced(row):
            return None
        return await asyncio.to_thread(self.over_quota, row)
