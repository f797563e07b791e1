"""The OCI bundle one gVisor run starts from: ``config.json`` and a root folder of empty mount points.

gVisor's kernel (the Sentry) serves every system call; host files reach it only through its file server
(the Gofer), which opens nothing but the bundle's root and the mounts listed here. The bundle says:

* identity: the process runs as uid/gid 1000 with no capabilities and ``noNewPrivileges``, in a user
  namespace where 1000 is the sandbox's own host uid (so what it writes in its workspace is that uid's, as
  under bwrap) and 0, the Gofer's identity, is the host's overflow uid ``nobody``, which owns nothing;
* filesystem: the same mounts as the bwrap tier (``mounts.view``), read-only unless the profile says
  otherwise, over a read-only root that holds nothing but the mount points, plus gVisor's own ``/proc``;
* rlimits: file size, open files, processes and core files, enforced by the Sentry for the code inside.

The root folder is made per run (mount points differ by run) by the host, root-owned and read-only to
everyone else; nothing the run does can write to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

from cloche.jail.profile import JailProfile, Mount, ResourceLimits, RunSpec

OVERFLOW_UID: Final = 65534  # the Gofer's host uid: the kernel's "nobody", owner of nothing
CONTAINER_ROOT: Final = 0


def rootfs(root: Path, placed: list[Mount]) -> Path:
    """Create the run's root: a folder per mount point (an empty file for a file bind), each symlink."""
    rootfs = root / "rootfs"
    rootfs.mkdir(mode=0o755)
    for mount in placed:
        target = rootfs / mount.dest.lstrip("/")
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if mount.kind == "symlink":
            assert mount.source is not None
            target.symlink_to(mount.source)
        elif mount.source is not None and mount.kind != "tmpfs" and not mount.source.is_dir():
            target.touch(mode=0o644, exist_ok=True)
        else:
            target.mkdir(mode=0o755, exist_ok=True)
    for point in ("proc", "dev"):
        (rootfs / point).mkdir(mode=0o755, exist_ok=True)
    return rootfs


def _oci_mount(mount: Mount) -> dict[str, Any] | None:
    if mount.kind == "tmpfs":
        size = [f"size={mount.size_bytes}"] if mount.size_bytes is not None else []
        return {"destination": mount.dest, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", *size]}
    if mount.kind in ("ro-bind", "bind"):
        access = "ro" if mount.kind == "ro-bind" else "rw"
        options = ["rbind", access, "nosuid", "nodev"]
        return {"destination": mount.dest, "type": "bind", "source": str(mount.source), "options": options}
    return None  # a folder or a symlink: already in the root folder


def _rlimits(limits: ResourceLimits) -> list[dict[str, Any]]:
    pairs = {
        "RLIMIT_FSIZE": limits.file_size_bytes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_NPROC": limits.pids,  # the Sentry counts the code's tasks alone: exactly the run's pids
        "RLIMIT_CORE": 0,
    }
    return [{"type": name, "hard": value, "soft": value} for name, value in pairs.items()]


def config(
    spec: RunSpec,
    profile: JailProfile,
    placed: list[Mount],
    env: dict[str, str],
    argv: list[str],
    jail_uid: int,
) -> dict[str, Any]:
    """The run's ``config.json`` (OCI runtime spec 1.0) as a dict."""
    mounts: list[dict[str, Any]] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    mounts += [m for m in map(_oci_mount, placed) if m is not None]
    # gVisor's own /dev/shm is not writable by the code: a tmpfs of the same size as /tmp, as under bwrap
    shm_options = ["nosuid", "nodev", "mode=1777", f"size={profile.tmp_size_bytes}"]
    mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs", "options": shm_options})
    ids = [
        {"containerID": CONTAINER_ROOT, "hostID": OVERFLOW_UID, "size": 1},
        {"containerID": jail_uid, "hostID": profile.host_uid, "size": 1},
    ]
    no_caps: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": jail_uid, "gid": jail_uid},
            "args": argv,
            "env": [f"{key}={value}" for key, value in env.items()],
            "cwd": spec.cwd,
            "noNewPrivileges": True,
            "capabilities": no_caps,
            "rlimits": _rlimits(spec.limits),
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": profile.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network", "user")],
            "uidMappings": ids,
            "gidMappings": ids,
        },
    }


def write(root: Path, document: dict[str, Any]) -> None:
    """Write ``config.json`` beside the root folder, readable by root alone (it holds the run's variables)."""
    fd = os.open(root / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out)
