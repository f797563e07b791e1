"""One server per host uid: the sandbox uid pool and the builder uid are locked for the server's life.

Two servers sharing uids would run each other's sandboxes under the same host identity and kill each
other's processes by uid. Each server takes an exclusive ``flock`` on one file per block of 1000 host uids
its pool or builder uid touches (``/run/cloche/uid-locks/uids-<block>.lock``); a second server on an
overlapping range finds a block taken and refuses to start, naming the holder. The kernel drops the locks
when the process ends, crash included, so a stale file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cloche.errors import JailUnavailable

BLOCK: Final = 1000


def blocks(uid_base: int, uid_count: int, builder_uid: int) -> list[int]:
    """The uid blocks a server with this pool and builder uid occupies, in locking order."""
    pool = range(uid_base // BLOCK, (uid_base + uid_count - 1) // BLOCK + 1)
    return sorted({*pool, builder_uid // BLOCK})


@dataclass
class UidRangeLock:
    """The held lock files; ``release`` (or the process ending) frees them."""

    lock_dir: Path
    fds: list[int] = field(default_factory=list)

    @classmethod
    def acquire(cls, lock_dir: Path, uid_base: int, uid_count: int, builder_uid: int, owner: str) -> UidRangeLock:
        """Lock every block, or raise ``JailUnavailable`` saying which server holds the first one taken."""
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        held = cls(lock_dir)
        try:
            for block in blocks(uid_base, uid_count, builder_uid):
                held._lock_block(block, owner)
        except BaseException:
            held.release()
            raise
        return held

    def _lock_block(self, block: int, owner: str) -> None:
        path = self.lock_dir / f"uids-{block}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            low = block * BLOCK
            raise JailUnavailable(
                f"host uids {low}-{low + BLOCK - 1} are in use by another cloche server ({holder}); give this "
                "server its own range with CLOCHE_UID_BASE, CLOCHE_UID_COUNT and CLOCHE_BUILDER_UID"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{owner}\n".encode(), 0)
        self.fds.append(fd)

    def release(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
