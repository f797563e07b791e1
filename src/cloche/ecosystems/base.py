"""The Ecosystem contract: what each language folder provides to the service, field by field.

The service runs one pipeline for every language (see docs/dependencies.md)::

    detect(workspace, entry) -> Detection          pure: reads workspace files only (through safefs)
    detect_code(workspace, entry, code)            optional: the same for code on a command line (python -c)
    resolve(detection, jail) -> Lock               exact versions (+ hashes), in the *install* jail
    build(lock, jail) -> list[Component]           fills a fresh environment, in the *install* jail
    verify(detection, lock, jail) -> Verification  optional: do the entry's imports import? repair, report
    check(detection, jail) -> bool                 optional: does a stored environment serve this entry too?
    inventory(environment, lock) -> [Component]    what a built environment holds (SBOM, install report)
    exec_env(environment, detection) -> ExecEnv    mounts + variables that make the environment visible
    command(entry, args) -> argv                   how to run an entry file

Everything an ecosystem declares is on ``Ecosystem`` below: mandatory members are abstract (or annotated
without a value, checked when the class is defined), optional ones carry their "not provided" default. The
service reads declared members only, never probes with ``getattr``. Departures from the common pipeline are
named ``Quirk`` values, so the service handles each once.

Ecosystems never print, exit, chdir or spawn processes themselves: everything that runs goes through
``InstallJail.run``, which is the jail runner with the install profile.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypedDict

from cloche.errors import ClocheError
from cloche.jail.profile import Mount
from cloche.jail.runner import RunResult

# The install jail's layout, which installers' command lines refer to (the jail builds it: jail/install.py).
INSTALL_INPUTS = "/work"  # ``files`` given to ``InstallJail.run`` appear here, read-only
INSTALL_CACHE = "/cache"  # the installer cache: shared across builds, or private and thrown away
INSTALL_TOOLS = "/opt/cloche/bin"  # server-staged installer binaries (uv)


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Component:
        return cls(**{**data, "hashes": tuple(data.get("hashes", ()))})


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

    @property
    def needs_packages(self) -> bool:
        return bool(self.requested or self.optional)


class Found(Protocol):
    """The fields every language's own detection record shares (what ``Detection.of`` copies)."""

    @property
    def source(self) -> str: ...

    @property
    def requested(self) -> tuple[str, ...]: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def unlisted(self) -> tuple[Mapping[str, str | None], ...]: ...


def detection_of(ecosystem: str, found: Found, **more: Any) -> Detection:
    """The ``Detection`` for a language's own record ``found`` (kept as ``details``); ``more`` sets the
    fields not every record has (``unresolved``, ``optional``, ``sys_path``)."""
    return Detection(
        ecosystem=ecosystem,
        source=found.source,
        requested=tuple(found.requested),
        fingerprint=found.fingerprint,
        unlisted=tuple(found.unlisted),
        details=found,
        **more,
    )


@dataclass(frozen=True)
class Lock:
    """An exact, reproducible install: the lock text is what the environment key hashes."""

    text: str
    components: tuple[Component, ...]


@dataclass(frozen=True)
class ExecEnv:
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    display: bool = False  # the environment's imports need an X display: each run starts one of its own


@dataclass(frozen=True)
class Needs:
    """What one source (an entry point, or packages typed in ``pip install``) asks of a sandbox's environment,
    as the ecosystem's own requirement strings. A sandbox's environment covers the union of its sources' needs."""

    requirements: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # installed when resolvable, never fatal
    constraints: tuple[str, ...] = ()  # pins that apply only if something requires the package

    def __bool__(self) -> bool:
        return bool(self.requirements or self.optional or self.constraints)

    def union(self, other: Needs) -> Needs:
        def merged(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(dict.fromkeys((*a, *b)))

        return Needs(
            merged(self.requirements, other.requirements),
            merged(self.optional, other.optional),
            merged(self.constraints, other.constraints),
        )


class Accumulates(abc.ABC):
    """Optional: a sandbox environment covering several sources at once (entry points that ran, packages typed
    in ``pip install``), for ecosystems whose requirements combine (Python, Node). Conflicting needs are the
    resolver's to report; the service then runs the entry in an environment of its own."""

    @abc.abstractmethod
    def needs(self, detection: Detection) -> Needs:
        """What ``detection`` asks for, as requirement strings."""

    @abc.abstractmethod
    def combine(self, base: Detection | None, extra: Needs) -> Detection:
        """A detection needing what ``base`` needs (keeping its lock, if any) and ``extra``; pure."""

    @abc.abstractmethod
    def package(self, requirement: str) -> str:
        """The package a requirement string (or an installed component's name) names, in canonical form."""

    @abc.abstractmethod
    def declare(self, current: Needs, root: Path, names: Sequence[str], files: Sequence[str], remove: bool) -> Needs:
        """``current`` (the packages typed so far) after a typed install (or removal) of ``names`` and the
        requirement ``files`` (workspace-relative); a later pin of a package replaces the earlier one.
        Raises a ``ClocheError`` (``InvalidRequest``, ``Unsupported``) naming what cannot be installed."""


class InstallJail(Protocol):
    """Runs installer commands in the *install* profile: registry-only egress (none when the ecosystem's
    sources are local), no workspace, one writable directory being built (``build_dir``, visible at
    ``build_mount``), inputs at ``INSTALL_INPUTS``, the installer cache at ``INSTALL_CACHE``, and scratch
    space. Every run gets the ecosystem's ``installer_env()`` under the variables given to it."""

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
        build_readonly: bool = False,
    ) -> RunResult:
        """``files`` are written into ``INSTALL_INPUTS`` (read-only in the jail) before the run;
        ``build_readonly`` mounts the directory being built read-only (a run that imports what was built)."""
        ...


class InstallRunOptions(TypedDict, total=False):
    """The keyword options of ``InstallJail.run``, for helpers that pass them on."""

    env: Mapping[str, str] | None
    files: Mapping[str, str] | None
    shared_cache: bool
    timeout_seconds: float | None
    build_readonly: bool


class Quirk(enum.Enum):
    """A named departure from the common pipeline, declared in ``Ecosystem.quirks``."""

    # An environment is built and mounted even when nothing is requested: it carries the toolchain's own
    # files (Go's module file and precompiled standard library, Java's launcher), so runs look the same
    # with and without packages.
    ENVIRONMENT_WITHOUT_PACKAGES = "environment_without_packages"
    # A typed command that runs an entry (`go run .`, `java Main.java`) cannot see the environment by itself:
    # the service replaces it with ``command(entry, args)``, the ecosystem's runner, which builds against it.
    RUNS_THROUGH_ITS_RUNNER = "runs_through_its_runner"


class Companion(abc.ABC):
    """An optional after-build companion: a store entry derived from a sealed environment (Python's
    precompiled bytecode), built off the exec's path and collected with its environment. A missing or
    failed companion costs speed only; runs use it once it has landed."""

    mount: str  # where the companion is built in its install jail (and where runs see it)

    @abc.abstractmethod
    async def build(self, jail: InstallJail) -> bool:
        """Fill ``jail.build_mount``; the environment is mounted read-only at its ``env_mount``.
        False: nothing worth keeping was built."""


@dataclass(frozen=True)
class RecoveryStep:
    """One step of repairing an environment whose imports failed the verification."""

    action: str  # "next_provider", "runtime_need", "version_backoff", "extra", "prebuilt", "display"
    module: str  # the import that failed
    requirement: str  # what was tried for it: a requirement added or put in place of another
    outcome: str  # "fixed", "failed" (the import still fails), "not_installable" (no lock or build)
    detail: str = ""  # why this step: the error seen, the data that vouched for it


@dataclass(frozen=True)
class ImportFailure:
    """An import that failed the verification (``names``: what ``from module import ...`` lacked)."""

    module: str
    error: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying a built environment: the lock it ended with (what the build directory now
    holds), the imports still failing (none: it may be sealed), and every recovery step tried on the way."""

    lock: Lock
    checked: int  # how many imports were checked
    failures: tuple[ImportFailure, ...] = ()
    steps: tuple[RecoveryStep, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


class Ecosystem(abc.ABC):
    """One language: the contract the service and the install jail read.

    Mandatory: ``name``, ``extensions``, ``env_mount`` and the abstract methods. Optional: everything with a
    default below; an ecosystem overrides what it provides.
    """

    # -- mandatory --
    name: ClassVar[str]  # "python", "node", ...: the sandbox language, the store's ecosystem field
    extensions: ClassVar[tuple[str, ...]]  # entry file extensions this ecosystem runs (registry order decides)
    env_mount: ClassVar[str]  # where the environment is built in install jails and mounted in runs

    # -- optional --
    quirks: ClassVar[frozenset[Quirk]] = frozenset()  # departures from the common pipeline
    # Read-only mounts every install jail of this ecosystem gets: toolchain, scripts, local package sources.
    install_mounts: tuple[Mount, ...] = ()
    # True when every package source is local (a wheel folder): install jails then get no network at all.
    install_offline: bool = False
    # Built after each new environment is sealed; None: the ecosystem has none.
    companion: Companion | None = None
    # A sandbox environment covering several sources; None: it is the last entry's (a Go module, a Java class path).
    accumulates: Accumulates | None = None
    # Programs agents expect on every run's PATH under names the system lacks (``python``, ``pip``), with the
    # mounts that provide them. ``env["PATH"]`` lists the directories to put on PATH.
    command_tools: ExecEnv = ExecEnv()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A concrete ecosystem declares its mandatory fields; a partial one (common.RunnerEcosystem) may not.
        # ABCMeta records __abstractmethods__ only after this hook, so the members themselves are asked.
        abstract = any(getattr(getattr(cls, n, None), "__isabstractmethod__", False) for n in dir(cls))
        if not abstract:
            missing = [n for n in ("name", "extensions", "env_mount") if n not in dir(cls)]
            if missing:
                raise TypeError(f"ecosystem {cls.__name__} does not declare {', '.join(missing)}")

    @abc.abstractmethod
    def command(self, entry: str, args: list[str]) -> list[str]:
        """argv that runs ``entry`` (a workspace-relative path) inside the jail."""

    @abc.abstractmethod
    def detect(self, root: Path, entry: str) -> Detection:
        """Pure: what the entry needs. Reads the workspace through safefs only."""

    def detect_code(self, root: Path, entry: str, code: str) -> Detection | None:
        """Optional: what source given on a command line (``python -c CODE``) needs, detected as if it were a file
        at ``entry`` (workspace-relative, in the command's folder, never read). None: the ecosystem does not read
        command-line code, which then runs with the environments the sandbox already has."""
        return None

    @abc.abstractmethod
    def abi(self) -> str:
        """The toolchain ABI and platform; part of every environment key."""

    @abc.abstractmethod
    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
        """An exact lock for ``detection``; raises ``InstallFailed`` with the installer's error."""

    @abc.abstractmethod
    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        """Install ``lock`` into ``jail.env_mount``; return what was installed."""

    @abc.abstractmethod
    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        """Components of a built environment: the lock's pins, enriched with installed metadata."""

    @abc.abstractmethod
    def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
        """Mounts and variables that make ``environment`` visible to a run."""

    def installer_env(self) -> Mapping[str, str]:
        """Optional: variables every install jail run gets (cache locations, registry, trust store)."""
        return {}

    async def verify(self, detection: Detection, lock: Lock, jail: InstallJail) -> Verification | None:
        """Optional: check, in the install jail where ``lock`` was just built, that what ``detection`` says the
        entry imports does import; repair what it can (rebuilding in the same jail) and report each step.
        None: this ecosystem does not verify, and the environment is sealed as built."""
        return None

    def check_key(self, detection: Detection) -> str | None:
        """Optional: a digest of what ``check`` would check for ``detection`` (the imports and the names taken
        from them); None: nothing to check, and no jail is started."""
        return None

    async def check(self, detection: Detection, jail: InstallJail) -> bool:
        """Optional, with ``check_key``: in an install jail where a stored environment is mounted read-only at
        ``env_mount``, does every import ``detection`` requires import? Asked when the store already holds the
        lock's environment but it was verified for another entry's imports (the same lock may lack a name or
        submodule this entry takes from it). False: build and verify (and repair) for this entry."""
        return True

    def unresolved_in(self, lock: Lock) -> tuple[Mapping[str, str | None], ...]:
        """Optional: imports the lock step left out as not installable here (a project that runs only on another
        operating system), as ``unresolved_imports`` entries (module, hint); reported beside the detection's."""
        return ()

    def needs_environment(self, detection: Detection) -> bool:
        return detection.needs_packages or Quirk.ENVIRONMENT_WITHOUT_PACKAGES in self.quirks

    def preload(self, detection: Detection) -> tuple[str, ...] | None:
        """Optional: the third-party modules a warm interpreter imports ahead of this entry's runs (never a
        workspace module; () when it needs none); None: this ecosystem has no warm interpreter."""
        return None
