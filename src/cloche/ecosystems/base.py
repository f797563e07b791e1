"""The Ecosystem protocol: what each language folder provides to the service.

The service runs one pipeline for every language (see docs/dependencies.md)::

    detect(workspace, entry) -> Detection          pure: reads workspace files only (through safefs)
    resolve(detection, jail) -> Lock               exact versions (+ hashes), in the *install* jail
    build(lock, jail) -> list[Component]           fills a fresh environment, in the *install* jail
    exec_env(environment) -> ExecEnv               mounts + variables that make the environment visible
    command(entry, args) -> argv                   how to run an entry file

Ecosystems never print, exit, chdir or spawn processes themselves: everything that runs goes through
``InstallJail.run``, which is the jail runner with the install profile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cloche.errors import ClocheError
from cloche.jail.profile import Mount
from cloche.jail.runner import RunResult


class InstallFailed(ClocheError):
    """The installer refused or failed; ``message`` carries its error, naming the package."""

    code = "install_failed"
    status = 200  # reported inside a normal exec result, never as an HTTP error


@dataclass(frozen=True)
class Component:
    """One installed package, as an SBOM and the install report see it."""

    name: str
    version: str
    purl: str
    license: str | None = None
    hashes: tuple[str, ...] = ()
    provenance: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "purl": self.purl,
            "license": self.license,
            "hashes": list(self.hashes),
            "provenance": self.provenance,
        }


@dataclass(frozen=True)
class Detection:
    """What an ecosystem found the entry needs, and the evidence."""

    ecosystem: str
    source: str  # "pyproject.toml", "requirements.txt", "inline", "scan", "package.json", ..., or "none"
    requested: tuple[str, ...]  # requirement strings as declared (or mapped, for scans)
    fingerprint: str  # hash of exactly the inputs that decide the result
    optional: tuple[str, ...] = ()  # install when resolvable, never fatal
    unlisted: tuple[Mapping[str, str | None], ...] = ()  # imports a manifest does not cover
    unresolved: tuple[Mapping[str, str | None], ...] = ()  # scanned imports nothing vouches for
    # Scanned imports something vouches for: module, package, version, source (which layer vouched) and a
    # reason a user can read; shown in the install report.
    resolved: tuple[Mapping[str, str | None], ...] = ()
    sys_path: tuple[str, ...] = ()  # workspace dirs to put on the import path (src layouts)
    details: Any = None  # the ecosystem's own detection record
    # Go and Java need an environment even with no packages: it carries the toolchain's module file, the
    # shared precompiled standard library or the launcher, so runs look the same with and without packages.
    toolchain: bool = False

    @property
    def needs_environment(self) -> bool:
        return bool(self.requested or self.optional or self.toolchain)


@dataclass(frozen=True)
class Lock:
    """An exact, reproducible install: the lock text is what the environment key hashes."""

    text: str
    components: tuple[Component, ...]


@dataclass(frozen=True)
class ExecEnv:
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


class InstallJail(Protocol):
    """Runs installer commands in the *install* profile: registry-only egress, no workspace, one writable
    environment directory (visible at ``env_mount``), the installer cache, and scratch space."""

    env_mount: str
    build_dir: Path | None
    build_mount: str  # where ``build_dir`` appears in the jail (usually ``env_mount``)

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        shared_cache: bool = True,
        timeout_seconds: float | None = None,
    ) -> RunResult:
        """``files`` are written into ``/work`` (read-only in the jail) before the run."""
        ...


ProgressSink = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class Ecosystem(Protocol):
    """One language."""

    name: str
    extensions: tuple[str, ...]
    env_mount: str  # where the environment appears in jails (built there, mounted there)

    def command(self, entry: str, args: list[str]) -> list[str]:
        """argv that runs ``entry`` (a workspace-relative path) inside the jail."""
        ...

    def detect(self, root: Path, entry: str) -> Detection:
        """Pure: what the entry needs. Reads the workspace through safefs only."""
        ...

    def abi(self) -> str:
        """The toolchain ABI and platform; part of every environment key."""
        ...

    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock: ...

    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        """Install ``lock`` into ``jail.env_mount``; return what was installed."""
        ...

    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        """Components of a built environment: the lock's pins, enriched with installed metadata."""
        ...

    def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
        """Mounts and variables that make ``environment`` visible to a run."""
        ...
