"""The filesystem the jail sees: system read-only, a synthetic identity, the workspace, a private /tmp.

There is no ``/sys``, no host ``/home``, ``/root``, ``/var`` or ``/run`` (a resident gets its own socket folder at
``/run/resident``), and from ``/etc`` only what
programs need to start (certificates, the dynamic loader cache, alternatives, time zone).
"""

from __future__ import annotations

from pathlib import Path

from cloche.jail.bwrap import BwrapCommand
from cloche.jail.profile import RESIDENT_DIR, SANDBOX_DIR, JailProfile, Mount

# Host /etc entries programs need; everything else in /etc stays invisible.
ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "ssl",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "java-17-openjdk",
    "python3",
    "python3.11",
)
# Merged-/usr hosts expose these as symlinks into /usr; others have real directories.
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")

SYNTHETIC_ETC = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n",
    "hostname": "sandbox\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost sandbox\n",
}


def write_synthetic_etc(jail_dir: Path, jail_uid: int) -> Path:
    """Write the identity files once at start-up; every jail binds them read-only."""
    etc = jail_dir / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    etc.chmod(0o755)
    for name, template in SYNTHETIC_ETC.items():
        target = etc / name
        target.write_text(template.format(uid=jail_uid))
        target.chmod(0o644)
    return etc


def view(profile: JailProfile, synthetic_etc: Path) -> list[Mount]:
    """What every tier places, in order, besides its own /proc and /dev: the system, identity, /tmp, the
    workspace and the profile's mounts. Optional /etc entries the host lacks are left out."""
    placed = [Mount("ro-bind", "/usr", Path("/usr"))]
    for name in TOP_LEVEL_LINKS:
        host = Path("/") / name
        if host.is_symlink():
            placed.append(Mount("symlink", f"/{name}", host.readlink()))
        elif host.is_dir():
            placed.append(Mount("ro-bind", f"/{name}", host))
    placed += [
        Mount("ro-bind", f"/etc/{name}", Path("/etc", name)) for name in ETC_ENTRIES if Path("/etc", name).exists()
    ]
    placed += [Mount("ro-bind", f"/etc/{name}", synthetic_etc / name) for name in SYNTHETIC_ETC]
    placed.append(Mount("tmpfs", "/tmp", size_bytes=profile.tmp_size_bytes))
    if profile.workspace is not None:
        placed.append(Mount("bind" if profile.workspace_writable else "ro-bind", SANDBOX_DIR, profile.workspace))
    else:
        placed.append(Mount("dir", SANDBOX_DIR))
    if profile.socket_dir is not None:  # a resident's sockets: the one host folder it may write besides /sandbox
        placed.append(Mount("bind", RESIDENT_DIR, profile.socket_dir))
    return [*placed, *profile.mounts]


def apply(cmd: BwrapCommand, profile: JailProfile, synthetic_etc: Path) -> None:
    cmd.args += ["--proc", "/proc", "--dev", "/dev"]
    for mount in view(profile, synthetic_etc):
        if mount.kind == "tmpfs":
            if mount.size_bytes is not None:
                cmd.args += ["--size", str(mount.size_bytes)]
            cmd.args += ["--tmpfs", mount.dest]
        elif mount.kind == "dir":
            cmd.args += ["--dir", mount.dest]
        else:
            cmd.args += [f"--{mount.kind}", str(mount.source), mount.dest]


def seal_root(cmd: BwrapCommand) -> None:
    """Remount the jail's root read-only, after every layer has placed its mounts."""
    cmd.args += ["--remount-ro", "/"]
