"""The *install* profile: where installers (and the third-party build scripts they run) execute.

An install jail sees no workspace. It sees the installer binary, its inputs at ``/work`` (read-only), one
writable environment directory at the ecosystem's mount point, the ecosystem's declared read-only mounts
(toolchain, scripts, local package sources), and a cache:

- ``shared_cache=True``: the shared installer cache, read-write. Used only for steps that run no
  third-party code (resolving and installing wheels).
- ``shared_cache=False``: a private, throw-away cache. Used whenever source builds may run, so a hostile
  ``setup.py`` can never plant anything another sandbox would later read.

Network: only the registry allowlist, through the egress proxy (none at all when the ecosystem declares its
sources local). Every variable an installer needs comes from the ecosystem (``Ecosystem.installer_env``);
this module knows no package manager. Install jails run as a dedicated builder uid, never as a sandbox's uid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

from cloche.ecosystems.base import INSTALL_CACHE, INSTALL_INPUTS, INSTALL_TOOLS, Ecosystem, InstallRunOptions
from cloche.jail.egress_policy import EgressPolicy
from cloche.jail.profile import Isolation, JailProfile, Mount, MountKind, ResourceLimits, RunSpec
from cloche.jail.runner import Runner, RunResult
from cloche.store import safefs
from cloche.store.envstore import EnvironmentStore

INSTALL_OUTPUT_LIMIT = 8 * 1024 * 1024
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class InstallSettings:
    builder_uid: int
    tools: Mapping[str, Path]  # name in TOOL_DIR -> host binary
    cache_root: Path  # one shared cache folder per ecosystem below this
    scratch: Path  # per-session work dirs
    egress: EgressPolicy
    memory_tmp_bytes: int = 1024 * 1024 * 1024
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    isolation: Isolation = "bwrap"  # install jails run third-party build scripts: gVisor is an option


class InstallSession:
    """One install jail session: a work dir, maybe a build dir, a private cache, all cleaned up at exit."""

    def __init__(
        self,
        runner: Runner,
        settings: InstallSettings,
        ecosystem: Ecosystem,
        build_dir: Path | None,
        extra_mounts: tuple[Mount, ...] = (),
        build_mount: str | None = None,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.ecosystem = ecosystem
        self.env_mount = ecosystem.env_mount
        self.build_dir = build_dir
        self.build_mount = build_mount or ecosystem.env_mount  # where the directory being built appears
        self.extra_mounts = extra_mounts  # e.g. a sealed environment a companion build reads
        self.work = settings.scratch / f"install-{secrets.token_hex(8)}"
        self.work.mkdir(mode=0o755)
        (self.work / "in").mkdir(mode=0o755)
        self.private_cache = self.work / "cache"
        self.private_cache.mkdir(mode=0o700)
        os.chown(self.private_cache, settings.builder_uid, settings.builder_uid)
        self.shared_cache = settings.cache_root / ecosystem.name
        self.shared_cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(self.shared_cache, settings.builder_uid, settings.builder_uid)

    async def run(self, argv: Sequence[str], **options: Unpack[InstallRunOptions]) -> RunResult:
        """``InstallJail.run``: the options and their defaults are documented there."""
        inputs = self.work / "in"
        for name, content in (options.get("files") or {}).items():
            safefs.validate_relpath(name)
            target = inputs / name
            target.write_text(content)
            target.chmod(0o644)
        mounts: list[Mount] = [Mount("ro-bind", INSTALL_INPUTS, inputs)]
        mounts += [Mount("ro-bind", f"{INSTALL_TOOLS}/{name}", path) for name, path in self.settings.tools.items()]
        cache = self.shared_cache if options.get("shared_cache", True) else self.private_cache
        mounts.append(Mount("bind", INSTALL_CACHE, cache))
        if self.build_dir is not None:
            kind: MountKind = "ro-bind" if options.get("build_readonly", False) else "bind"
            mounts.append(Mount(kind, self.build_mount, self.build_dir))
        mounts += self.ecosystem.install_mounts
        mounts += self.extra_mounts
        profile = JailProfile(
            name="install",
            host_uid=self.settings.builder_uid,
            mounts=tuple(mounts),
            tmp_size_bytes=self.settings.memory_tmp_bytes,
            egress=None if self.ecosystem.install_offline else self.settings.egress,
            isolation=self.settings.isolation,
        )
        spec = RunSpec(
            argv=tuple(argv),
            env={**self.ecosystem.installer_env(), **(options.get("env") or {})},
            cwd=INSTALL_INPUTS,
            timeout_seconds=options.get("timeout_seconds") or DEFAULT_TIMEOUT,
            output_limit_bytes=INSTALL_OUTPUT_LIMIT,
            limits=self.settings.limits,
        )
        return await self.runner.run(spec, profile)

    def close(self) -> None:
        safefs.remove_tree(self.work)


class InstallJailFactory:
    def __init__(self, runner: Runner, settings: InstallSettings, envs: EnvironmentStore) -> None:
        self.runner = runner
        self.settings = settings
        self.envs = envs

    @contextlib.asynccontextmanager
    async def session(
        self, ecosystem: Ecosystem, build: bool = False, build_mount: str | None = None, mounts: tuple[Mount, ...] = ()
    ) -> AsyncIterator[InstallSession]:
        build_dir = self.envs.new_build_dir() if build else None
        if build_dir is not None:
            os.chown(build_dir, self.settings.builder_uid, self.settings.builder_uid)
        session = InstallSession(self.runner, self.settings, ecosystem, build_dir, mounts, build_mount)
        try:
            yield session
        except BaseException:
            if build_dir is not None and build_dir.exists():
                safefs.remove_tree(build_dir)  # nothing half-built survives a failure
            raise
        finally:
            session.close()
