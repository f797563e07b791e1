"""The *install* profile: where installers (and the third-party build scripts they run) execute.

An install jail sees no workspace. It sees the installer binary, its inputs at ``/work`` (read-only), one
writable environment directory at the ecosystem's mount point, and a cache:

- ``shared_cache=True``: the shared installer cache, read-write. Used only for steps that run no
  third-party code (resolving and installing wheels).
- ``shared_cache=False``: a private, throw-away cache. Used whenever source builds may run, so a hostile
  ``setup.py`` can never plant anything another sandbox would later read.

Network: only the registry allowlist, through the egress proxy (none at all with a local wheel dir).
Install jails run as a dedicated builder uid, never as a sandbox's uid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloche.jail.egress_policy import EgressPolicy
from cloche.jail.profile import JailProfile, Mount, ResourceLimits, RunSpec
from cloche.jail.runner import Runner, RunResult
from cloche.store import safefs
from cloche.store.envstore import EnvironmentStore

TOOL_DIR = "/opt/cloche/bin"
WHEELS_MOUNT = "/opt/cloche/wheels"
CACHE_MOUNT = "/cache"
WORK_MOUNT = "/work"
INSTALL_OUTPUT_LIMIT = 8 * 1024 * 1024
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class InstallSettings:
    builder_uid: int
    tools: Mapping[str, Path]  # name in TOOL_DIR -> host binary
    cache_root: Path  # one shared cache folder per ecosystem below this
    scratch: Path  # per-session work dirs
    egress: EgressPolicy
    wheel_dir: Path | None = None
    memory_tmp_bytes: int = 1024 * 1024 * 1024
    limits: ResourceLimits = field(default_factory=ResourceLimits)


class InstallSession:
    """One install jail session: a work dir, maybe a build dir, a private cache, all cleaned up at exit."""

    def __init__(
        self,
        runner: Runner,
        settings: InstallSettings,
        ecosystem: str,
        env_mount: str,
        build_dir: Path | None,
        extra_mounts: tuple[Mount, ...] = (),
        build_mount: str | None = None,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.ecosystem = ecosystem
        self.env_mount = env_mount
        self.build_dir = build_dir
        self.build_mount = build_mount or env_mount  # where the directory being built appears in the jail
        self.extra_mounts = extra_mounts  # the ecosystem's read-only toolchain and local package sources
        self.work = settings.scratch / f"install-{secrets.token_hex(8)}"
        self.work.mkdir(mode=0o755)
        (self.work / "in").mkdir(mode=0o755)
        self.private_cache = self.work / "cache"
        self.private_cache.mkdir(mode=0o700)
        os.chown(self.private_cache, settings.builder_uid, settings.builder_uid)
        self.shared_cache = settings.cache_root / ecosystem
        self.shared_cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(self.shared_cache, settings.builder_uid, settings.builder_uid)

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        shared_cache: bool = True,
        timeout_seconds: float | None = None,
    ) -> RunResult:
        inputs = self.work / "in"
        for name, content in (files or {}).items():
            safefs.validate_relpath(name)
            target = inputs / name
            target.write_text(content)
            target.chmod(0o644)
        mounts: list[Mount] = [Mount("ro-bind", WORK_MOUNT, inputs)]
        mounts += [Mount("ro-bind", f"{TOOL_DIR}/{name}", path) for name, path in self.settings.tools.items()]
        cache = self.shared_cache if shared_cache else self.private_cache
        mounts.append(Mount("bind", CACHE_MOUNT, cache))
        if self.build_dir is not None:
            mounts.append(Mount("bind", self.build_mount, self.build_dir))
        if self.settings.wheel_dir is not None:
            mounts.append(Mount("ro-bind", WHEELS_MOUNT, self.settings.wheel_dir))
        mounts += self.extra_mounts
        profile = JailProfile(
            name="install",
            host_uid=self.settings.builder_uid,
            mounts=tuple(mounts),
            tmp_size_bytes=self.settings.memory_tmp_bytes,
            egress=None if self.settings.wheel_dir is not None else self.settings.egress,
        )
        base_env = {
            "UV_CACHE_DIR": CACHE_MOUNT,
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
            # The host's trust store (bound at /etc/ssl), not uv's bundled roots: operators add their CAs there.
            "UV_NATIVE_TLS": "1",
            # npm bundles its own roots; installers also trust the host's store. (Not set for runs: parsing the
            # whole store costs every node start ~70 ms; a sandbox behind a TLS-intercepting proxy sets it in env.)
            "NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt",
            "npm_config_cache": CACHE_MOUNT,
            "GOMODCACHE": f"{CACHE_MOUNT}/mod",
            "GOCACHE": f"{CACHE_MOUNT}/build",
        }
        spec = RunSpec(
            argv=tuple(argv),
            env={**base_env, **(env or {})},
            cwd=WORK_MOUNT,
            timeout_seconds=timeout_seconds or DEFAULT_TIMEOUT,
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
        self, ecosystem: Any, build: bool = False, build_mount: str | None = None, mounts: tuple[Mount, ...] = ()
    ) -> AsyncIterator[InstallSession]:
        build_dir = self.envs.new_build_dir() if build else None
        if build_dir is not None:
            os.chown(build_dir, self.settings.builder_uid, self.settings.builder_uid)
        env_mount: str = getattr(ecosystem, "env_mount", "/env")
        extra: tuple[Mount, ...] = (*getattr(ecosystem, "install_mounts", ()), *mounts)
        session = InstallSession(self.runner, self.settings, ecosystem.name, env_mount, build_dir, extra, build_mount)
        try:
            yield session
        except BaseException:
            if build_dir is not None and build_dir.exists():
                safefs.remove_tree(build_dir)  # nothing half-built survives a failure
            raise
        finally:
            session.close()
