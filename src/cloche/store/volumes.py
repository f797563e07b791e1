"""Workspace volumes: one sparse ext4 image per sandbox, loop-mounted at its workspace (host side, root only).

The kernel enforces the quota: the filesystem holds ``quota_bytes`` of data and ``inodes`` files, so a write past
either fails with ``ENOSPC`` inside the run, at once, whatever the writer does. ``statvfs`` tells usage instantly.

- **Sparse.** The image is a sparse file sized for the quota plus the filesystem's own bookkeeping (inode tables,
  a 4 MiB journal, ext4's reserve for delayed allocation); only written blocks take host space, and mounting with
  ``discard`` returns deleted data to the host.
- **Nothing half-made.** An image is built under a temporary name and renamed into place only after ``mkfs``
  succeeded; a failed or interrupted build leaves a temporary image, which ``remove_partial`` deletes.
- **Hardened mount.** ``nosuid,nodev``; the root directory belongs to the sandbox's host uid, mode 0700;
  ``lost+found`` is removed so the user sees an empty workspace.
- **Auto-cleared loop devices.** ``mount -o loop`` marks the loop device auto-clear, so unmounting detaches it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cloche.errors import JailUnavailable

log = logging.getLogger("cloche.volumes")

IMAGE_SUFFIX = ".img"
PARTIAL_SUFFIX = ".img.partial"
MOUNT_OPTIONS = "loop,discard,nosuid,nodev"
BLOCK = 4096
INODE_BYTES = 256
JOURNAL_MIB = 4
MIB = 1024 * 1024
TOOL_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
TOOLS = ("mkfs.ext4", "mount", "umount")
LOOP_CONTROL = Path("/dev/loop-control")
_COMMAND_TIMEOUT = 60.0


class VolumeError(JailUnavailable):
    """The host could not build, mount or unmount a workspace volume (503: the host, not the request)."""


@dataclass(frozen=True)
class Usage:
    """A mounted workspace's use of its volume, from ``statvfs``."""

    used_bytes: int
    free_bytes: int  # what writes can still add
    used_inodes: int
    free_inodes: int


def usage(mountpoint: Path) -> Usage:
    st = os.statvfs(mountpoint)
    return Usage(
        used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize,
        free_bytes=st.f_bavail * st.f_frsize,
        used_inodes=st.f_files - st.f_ffree,
        free_inodes=st.f_favail,
    )


def image_bytes(quota_bytes: int, inodes: int) -> int:
    """Image size whose free space is at least ``quota_bytes`` (and at most about 2 MiB more).

    ext4 takes from the device: inode tables (``inodes`` x 256 bytes), the journal, and a reserve the kernel keeps
    back for delayed allocation (2% of blocks, at most 16 MiB); bitmaps and descriptors fit in the last 2 MiB.
    """
    reserve = min(quota_bytes // 50, 4096 * BLOCK)
    size = quota_bytes + inodes * INODE_BYTES + JOURNAL_MIB * MIB + reserve + 2 * MIB
    return -(-size // BLOCK) * BLOCK


def _tool(name: str) -> str:
    found = shutil.which(name, path=TOOL_PATH)
    if found is None:
        raise VolumeError(f"{name} not found in {TOOL_PATH}: install e2fsprogs and mount (util-linux)")
    return found


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VolumeError(f"{argv[0]} failed: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise VolumeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {detail[-1] if detail else ''}")


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


class WorkspaceVolumes:
    """The images under ``images`` (root-only, 0700), one per sandbox, each named ``<sandbox id>.img``."""

    def __init__(self, images: Path) -> None:
        self.images = images

    def image(self, sandbox_id: str) -> Path:
        return self.images / f"{sandbox_id}{IMAGE_SUFFIX}"

    def exists(self, sandbox_id: str) -> bool:
        return self.image(sandbox_id).is_file()

    def sandbox_ids(self) -> list[str]:
        return sorted(p.name.removesuffix(IMAGE_SUFFIX) for p in self.images.glob(f"*{IMAGE_SUFFIX}"))

    def create(self, sandbox_id: str, mountpoint: Path, quota_bytes: int, inodes: int, owner: int) -> None:
        """Build the image, mount it at ``mountpoint`` and hand its root to ``owner``; all or nothing."""
        image = self.image(sandbox_id)
        partial = self.images / f"{sandbox_id}{PARTIAL_SUFFIX}"
        try:
            with open(partial, "xb") as handle:  # sparse: no block is written until ext4 writes it
                os.fchmod(handle.fileno(), 0o600)
                handle.truncate(image_bytes(quota_bytes, inodes))
            _run(
                [
                    _tool("mkfs.ext4"),
                    "-q",
                    "-F",
                    "-b",
                    str(BLOCK),
                    "-I",
                    str(INODE_BYTES),
                    "-N",
                    str(inodes),
                    "-m",
                    "0",  # no blocks reserved for root: the quota is the user's
                    "-J",
                    f"size={JOURNAL_MIB}",
                    "-O",
                    "^resize_inode",
                    "-E",
                    f"root_owner={owner}:{owner}",
                    "-L",
                    "cloche-ws",
                    str(partial),
                ]
            )
            os.rename(partial, image)
            self.mount(sandbox_id, mountpoint)
            (mountpoint / "lost+found").rmdir()
            os.chown(mountpoint, owner, owner)
            os.chmod(mountpoint, 0o700)
        except BaseException:
            self.destroy(sandbox_id, mountpoint)
            partial.unlink(missing_ok=True)
            raise

    def mount(self, sandbox_id: str, mountpoint: Path) -> None:
        """Mount the sandbox's image at ``mountpoint`` unless it already is (after a crash it still is)."""
        if is_mounted(mountpoint):
            return
        # The mount point itself is root's 0700: unmounted, a workspace cannot be written by anyone but root.
        mountpoint.mkdir(mode=0o700, exist_ok=True)
        _run([_tool("mount"), "-o", MOUNT_OPTIONS, str(self.image(sandbox_id)), str(mountpoint)])

    def unmount(self, mountpoint: Path) -> None:
        if not is_mounted(mountpoint):
            return
        try:
            _run([_tool("umount"), str(mountpoint)])
        except VolumeError as exc:
            # Busy (a file the server still has open): detach it now; the loop device clears once released.
            log.warning("lazy unmount", extra={"mountpoint": str(mountpoint), "error": exc.message})
            _run([_tool("umount"), "--lazy", str(mountpoint)])

    def destroy(self, sandbox_id: str, mountpoint: Path) -> None:
        """Unmount, remove the image and the empty mount point. Safe to repeat."""
        self.unmount(mountpoint)
        self.image(sandbox_id).unlink(missing_ok=True)
        if mountpoint.is_dir() and not is_mounted(mountpoint):
            try:
                mountpoint.rmdir()
            except OSError as exc:  # not empty: a pre-volume workspace; the caller removes it safely
                log.info("mount point kept", extra={"mountpoint": str(mountpoint), "error": str(exc)})

    def remove_partial(self) -> int:
        """Delete images whose build a crash interrupted."""
        partial = list(self.images.glob(f"*{PARTIAL_SUFFIX}"))
        for path in partial:
            path.unlink(missing_ok=True)
        return len(partial)


def unavailable_reason(scratch: Path) -> str | None:
    """Why workspace volumes cannot work on this host, or None: build, mount and unmount a tiny one."""
    try:
        for name in TOOLS:
            _tool(name)
        if not LOOP_CONTROL.exists():
            return f"{LOOP_CONTROL} is missing: load the loop module (modprobe loop) or give the container loop devices"
        probe = WorkspaceVolumes(scratch)
        mountpoint = scratch / "volume-probe"
        probe.destroy("volume-probe", mountpoint)
        probe.create("volume-probe", mountpoint, MIB, 64, os.getuid())
        probe.destroy("volume-probe", mountpoint)
    except VolumeError as exc:
        return exc.message
    except OSError as exc:
        return f"a test volume could not be made in {scratch}: {exc}"
    return None
