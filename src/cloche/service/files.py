"""Workspace file use cases. All host-side I/O goes through ``store.safefs`` (no symlink is ever followed)."""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from cloche.errors import InvalidRequest, TooLarge
from cloche.models import FileEntry, FileList, FilesWritten
from cloche.service.sandboxes import SandboxService
from cloche.store import archive, safefs
from cloche.store.metadata import SandboxRow


def _entry(info: safefs.FileInfo) -> FileEntry:
    return FileEntry(path=info.path, type=info.type, size=info.size, sha256=info.sha256, mtime=info.mtime)


def _size(data: BinaryIO) -> int:
    try:
        return os.fstat(data.fileno()).st_size
    except (OSError, AttributeError, ValueError):  # in-memory spools have no descriptor
        position = data.tell()
        data.seek(0, os.SEEK_END)
        size = data.tell() - position
        data.seek(position)
        return size


def _join(folder: str, name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1] if not folder else name
    return f"{folder.strip('/')}/{base}" if folder.strip("/") else name


class FileService:
    def __init__(self, sandboxes: SandboxService) -> None:
        self.sandboxes = sandboxes
        self.settings = sandboxes.settings

    async def upload(
        self, tenant: str, sandbox_id: str, files: list[tuple[str, BinaryIO]], folder: str
    ) -> FilesWritten:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        if not files:
            raise InvalidRequest("no file in the request: send one or more multipart fields named 'file'")
        if folder:
            safefs.validate_relpath(folder)
        targets = [(_join(folder, name), data) for name, data in files]
        for target, _ in targets:
            safefs.validate_relpath(target)
        root = self.sandboxes.paths.workspace(row.id)
        await self._check_quota(row, sum(_size(data) for _, data in targets), len(targets))
        written = []
        for target, data in targets:
            info = await asyncio.to_thread(
                safefs.write_file,
                root,
                target,
                data,
                uid=row.host_uid,
                gid=row.host_uid,
                max_bytes=self.settings.max_upload_bytes,
            )
            written.append(_entry(info))
        self.sandboxes.touch(row.id)
        await self.sandboxes.audit.files_written(row.id, written)
        return FilesWritten(filename=written[0].path if len(written) == 1 else None, files=written)

    async def read(self, tenant: str, sandbox_id: str, path: str) -> bytes:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        root = self.sandboxes.paths.workspace(row.id)
        return await asyncio.to_thread(safefs.read_file, root, path, max_bytes=self.settings.max_upload_bytes)

    async def listing(self, tenant: str, sandbox_id: str, path: str) -> FileList:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        root = self.sandboxes.paths.workspace(row.id)
        infos = await asyncio.to_thread(safefs.list_dir, root, path)
        return FileList(path=path, files=[_entry(i) for i in infos])

    async def delete(self, tenant: str, sandbox_id: str, path: str) -> None:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        root = self.sandboxes.paths.workspace(row.id)
        await asyncio.to_thread(safefs.delete_path, root, path)
        self.sandboxes.touch(row.id)
        await self.sandboxes.audit.file_deleted(row.id, path)

    async def _check_quota(self, row: SandboxRow, incoming: int, files: int = 0) -> None:
        reason = await asyncio.to_thread(self.sandboxes.quota.over_quota, row, incoming, files)
        if reason is not None:
            raise TooLarge(f"{reason}; delete files or create the sandbox with a larger limits.disk_mb")

    async def extract(self, tenant: str, sandbox_id: str, data: BinaryIO, folder: str) -> FilesWritten:
        row = self.sandboxes.get_row(tenant, sandbox_id)
        root = self.sandboxes.paths.workspace(row.id)
        await self._check_quota(row, 0)
        room = await asyncio.to_thread(self.sandboxes.quota.room_bytes, row)
        infos = await asyncio.to_thread(
            archive.extract_archive,
            root,
            data,
            dest=folder,
            uid=row.host_uid,
            gid=row.host_uid,
            max_members=self.settings.max_archive_members,
            max_total_bytes=min(self.settings.max_archive_bytes, room),
            max_member_bytes=self.settings.max_upload_bytes,
        )
        self.sandboxes.touch(row.id)
        entries = [_entry(i) for i in infos]
        await self.sandboxes.audit.files_written(row.id, entries, archive=True)
        return FilesWritten(filename=None, files=entries)
