"""What a jailed run may see and do (``JailProfile``) and what it runs (``RunSpec``).

Defaults fail closed: no network, read-only system, no writable paths but the ones a profile names.
Two profiles are built from these: *exec* (workspace read-write, environments read-only) and
*install* (egress to registries, writes only the environment being built).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from cloche.jail.egress_policy import EgressPolicy

SANDBOX_DIR = "/sandbox"
# Where a resident's socket directory appears inside its jail (read-write, owned by the sandbox's uid): the
# unix sockets the server reaches it through (ports relay, kernel IPC, control sockets) live there.
RESIDENT_DIR = "/run/resident"

MountKind = Literal["ro-bind", "bind", "tmpfs", "dir", "symlink"]
# Which kernel the code talks to: the host's behind bubblewrap, or gVisor's (runsc). See jail/tier.py.
Isolation = Literal["bwrap", "gvisor"]
ISOLATIONS: Final[tuple[Isolation, ...]] = ("bwrap", "gvisor")


@dataclass(frozen=True)
class Mount:
    """One filesystem entry placed in the jail; ``source`` is a host path for binds, the link's target (a path
    inside the jail) for a symlink."""

    kind: MountKind
    dest: str
    source: Path | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class JailProfile:
    """Isolation for one run. Every field has the most restrictive default."""

    name: Literal["exec", "install"]
    host_uid: int
    workspace: Path | None = None
    workspace_writable: bool = False
    mounts: tuple[Mount, ...] = ()
    tmp_size_bytes: int = 256 * 1024 * 1024
    hostname: str = "sandbox"
    egress: EgressPolicy | None = None  # None or an empty allowlist: no network at all
    # A resident's host socket directory, bound read-write at RESIDENT_DIR; None for one-request runs.
    socket_dir: Path | None = None
    isolation: Isolation = "bwrap"

    def __post_init__(self) -> None:
        # A mount at or below the workspace would hide the user's own files of that name (a `deps/` folder).
        for mount in self.mounts:
            if mount.dest == SANDBOX_DIR or mount.dest.startswith(SANDBOX_DIR + "/"):
                raise ValueError(f"{mount.dest} would hide workspace files: mount it outside {SANDBOX_DIR}")


@dataclass(frozen=True)
class ResourceLimits:
    """Kernel-enforced caps for one run (cgroup + rlimits). Defaults suit a small script."""

    memory_bytes: int = 1024 * 1024 * 1024
    pids: int = 256
    cpu_cores: float = 1.0
    file_size_bytes: int = 1024 * 1024 * 1024
    open_files: int = 1024


@dataclass(frozen=True)
class RunSpec:
    """One command to run: argv, environment, stdin, and the caps that bound it."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = SANDBOX_DIR
    stdin: bytes | None = None
    timeout_seconds: float = 30.0
    # Cap per stream on what the run keeps; past it the run stops. None (residents): nothing is kept and
    # nothing is capped, the output only goes to the run's sink (which keeps its own bounded tail).
    output_limit_bytes: int | None = 1_048_576
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    # Polled about once a second while the run lives; a returned reason stops it (e.g. a disk quota).
    watchdog: Callable[[], Awaitable[str | None]] | None = None
