"""Python: detect what an entry needs, resolve it with uv to an exact lock, build a venv, expose it.

The environment is a venv built *at* ``/opt/cloche/env/python`` inside the install jail, so script shebangs and
paths recorded at install time are the ones every run sees when the sealed entry is mounted there (outside the
workspace: a user's ``deps/`` folder is never hidden).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cloche.ecosystems.base import (
    INSTALL_CACHE,
    INSTALL_INPUTS,
    INSTALL_TOOLS,
    Companion,
    Component,
    Detection,
    Ecosystem,
    ExecEnv,
    InstallFailed,
    InstallJail,
    Lock,
    Verification,
)
from cloche.ecosystems.common import ENV_ROOT, JailScripts, installer_error, run_installer
from cloche.ecosystems.python import platform_only, prebuilt, recovery
from cloche.ecosystems.python.accumulate import PythonNeeds
from cloche.ecosystems.python.built_venv import BuiltVenv, check_imports
from cloche.ecosystems.python.detect import PythonDetection
from cloche.ecosystems.python.detect import detect as detect_python
from cloche.ecosystems.python.importmap import Prebuilt
from cloche.ecosystems.python.lockfile import components, enforce_declared_hashes
from cloche.ecosystems.python.resolve import Resolver
from cloche.jail import display
from cloche.jail.profile import SANDBOX_DIR, Mount
from cloche.store.envstore import META, companion_key

log = logging.getLogger("cloche.deps")
TARGET_PYTHON = "/usr/bin/python3"
ENV_MOUNT = f"{ENV_ROOT}/python"
UV = f"{INSTALL_TOOLS}/uv"
PYCACHE_MOUNT = "/opt/cloche/pycache"
WHEELS = "/opt/cloche/wheels"  # a local wheel folder (CLOCHE_PYTHON_WHEEL_DIR) in install jails
COMMAND_TOOLS = "/opt/cloche/python-tools"  # on every run's PATH: python (the system's python3), pip, pip3, uv
HERE = Path(__file__).resolve().parent
INSTALL_TIMEOUT = 900.0
# uv in every install jail: its cache is the jail's, the interpreter is the system's (never downloaded), and
# TLS trusts the host's store (bound at /etc/ssl), not uv's bundled roots: operators add their CAs there.
UV_ENV = {"UV_CACHE_DIR": INSTALL_CACHE, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "UV_NATIVE_TLS": "1"}


class Bytecode(Companion):
    """The environment's modules compiled into a pycache prefix tree, a companion entry runs mount read-only.

    No ``--compile-bytecode`` at install: compiling all of numpy and pandas takes longer than installing them,
    so it runs right after the environment is sealed, off the exec's path.
    """

    mount = PYCACHE_MOUNT

    async def build(self, jail: InstallJail) -> bool:
        """Runs only the bytecode compiler (no package code), with the environment mounted read-only at its
        usual path so the tree mirrors the paths runs import from."""
        # The standard library too: with a pycache prefix set, Python looks for *every* module's bytecode in the
        # prefix tree, so a stdlib missing there would be recompiled from source on each run.
        stdlib = "/usr/lib/" + os.path.basename(os.path.realpath(TARGET_PYTHON))  # /usr/lib/python3.X
        argv = [TARGET_PYTHON, "-m", "compileall", "-q", "-j", "0", f"{ENV_MOUNT}/lib", stdlib]
        result = await jail.run(argv, env={"PYTHONPYCACHEPREFIX": jail.build_mount}, shared_cache=False)
        return result.status == "succeeded"


class PythonEcosystem(Ecosystem):
    name = "python"
    extensions = (".py",)
    env_mount = ENV_MOUNT
    companion = Bytecode()

    def __init__(
        self,
        index_url: str = "https://pypi.org/simple",
        wheel_dir: Path | None = None,
        allow_unknown_imports: bool = False,
        resolver: Resolver | None = None,
        stage: Path | None = None,
    ) -> None:
        """``stage``: a folder jails can reach, for the jail tools when the checkout is not traversable."""
        self.index_url = index_url
        # Without one given, scanned imports resolve from the shipped data alone (no long-tail checks).
        self.resolver = resolver or Resolver()
        self.wheel_dir = wheel_dir
        self.allow_unknown_imports = allow_unknown_imports
        self.accumulates = PythonNeeds()

        tool = JailScripts(HERE / "jail_tools", COMMAND_TOOLS, stage, "python").mount

        # Agents type `python`, `pip` and `uv run`; the system has only python3 (a venv adds python, never pip).
        self.command_tools = ExecEnv(
            mounts=(
                Mount("symlink", f"{COMMAND_TOOLS}/python", Path(TARGET_PYTHON)),
                tool("pip"),
                Mount("symlink", f"{COMMAND_TOOLS}/pip3", Path("pip")),
                tool("uv"),
            ),
            env={"PATH": COMMAND_TOOLS},
        )
        if wheel_dir is not None:  # every package comes from the folder: install jails need no network
            self.install_mounts = (Mount("ro-bind", WHEELS, wheel_dir),)
            self.install_offline = True

    def installer_env(self) -> Mapping[str, str]:
        return UV_ENV

    def command(self, entry: str, args: list[str]) -> list[str]:
        return ["python3", entry, *args]

    # detection

    def detect(self, root: Path, entry: str) -> Detection:
        return self._detection(
            detect_python(root, entry, resolver=self.resolver, allow_unknown=self.allow_unknown_imports)
        )

    def detect_code(self, root: Path, entry: str, code: str) -> Detection:
        found = detect_python(
            root, entry, resolver=self.resolver, allow_unknown=self.allow_unknown_imports, code=code.encode()
        )
        return self._detection(found)

    def _detection(self, found: PythonDetection) -> Detection:
        requested = tuple(found.requirements)
        return Detection(
            ecosystem=self.name,
            source=found.source,
            requested=requested,
            fingerprint=found.fingerprint,
            optional=tuple(found.optional_requirements),
            unlisted=tuple(s.to_dict() for s in found.unlisted),
            unresolved=tuple(u.to_dict() for u in found.unresolved),
            resolved=tuple(r.to_dict() for r in found.resolved),
            sys_path=tuple(found.sys_path),
            details=found,
        )

    def abi(self) -> str:
        # The jail's interpreter: /usr/bin/python3 -> python3.X decides the ABI tag.
        version = os.path.basename(os.path.realpath(TARGET_PYTHON)).removeprefix("python")
        libc = "-".join(platform.libc_ver())
        return f"cpython-{version}-{platform.machine()}-{libc}"

    # installation (every command runs in the install jail)

    def _index_args(self) -> list[str]:
        if self.wheel_dir is not None:
            return ["--no-index", "--find-links", WHEELS]
        return ["--index-url", self.index_url]

    def preload(self, detection: Detection) -> tuple[str, ...]:
        """The required third-party imports the scan found (the workspace's own modules never are); an entry
        that imports none still runs warm (the interpreter's own start-up and the jail's are what it saves)."""
        found = detection.details
        return tuple(need.module for need in found.imports) if isinstance(found, PythonDetection) else ()

    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
        found = detection.details
        constraints = found.constraints if isinstance(found, PythonDetection) else ()
        requested, optional = detection.requested, detection.optional
        lock: Lock | None = None
        error = InstallFailed("")
        try:
            lock, with_sources, whole = await self._lock_needs(requested, optional, constraints, jail, detection.source)
            if whole and not with_sources:
                return lock  # every project has a Linux wheel: none runs only on another system
        except InstallFailed as exc:
            error = exc
        # Scanned projects that run only on Windows or macOS (platform_only.py): asked about only now.
        pypi = self.resolver.long_tail.pypi
        refused = await asyncio.to_thread(platform_only.refusals, pypi, detection.resolved)
        if not refused:
            if lock is None:
                raise error
            return lock
        dropped = {project for project, _ in refused.values()}
        requested = tuple(r for r in requested if _requirement_name(r) not in dropped)
        optional = tuple(r for r in optional if _requirement_name(r) not in dropped)
        text = ""
        if requested or optional:
            lock, _, _ = await self._lock_needs(requested, optional, constraints, jail, detection.source)
            text = lock.text
        text = platform_only.annotate(text, refused)
        return Lock(text=text, components=tuple(components(text, None, detection.source)))

    async def _lock_needs(
        self,
        requested: Sequence[str],
        optional: Sequence[str],
        constraints: Sequence[str],
        jail: InstallJail,
        provenance: str,
    ) -> tuple[Lock, bool, bool]:
        """The lock of the required and optional needs, else of the required ones alone (optional imports are
        never fatal); whether source archives had to be allowed for it, and whether it holds the optional ones."""
        attempts = [tuple(requested) + tuple(optional)]
        if optional:
            attempts.append(tuple(requested))
        error = ""
        for n, wanted in enumerate(attempts):
            try:
                lock, with_sources = await self._lock(wanted, constraints, jail, provenance)
                return lock, with_sources, n == 0
            except InstallFailed as exc:
                error = exc.message
        raise InstallFailed(error)

    async def lock_for(
        self, requested: Sequence[str], constraints: Sequence[str], jail: InstallJail, provenance: str
    ) -> Lock:
        """``uv pip compile`` of ``requested`` under ``constraints``: exact pins with every file's hash. A pinned
        project that publishes only a source archive is replaced by its reviewed prebuilt substitute (prebuilt.py)."""
        lock, _ = await self._lock(requested, constraints, jail, provenance)
        return lock

    async def _lock(
        self, requested: Sequence[str], constraints: Sequence[str], jail: InstallJail, provenance: str
    ) -> tuple[Lock, bool]:
        """``lock_for``, and whether source archives had to be allowed."""
        text, with_sources = await self._compile(requested, constraints, jail)
        if not with_sources and recovery.skipped_series(text, requested):
            try:  # the series a back-off asks for has only source archives: allow them
                text, with_sources = await self._compile(requested, constraints, jail, sources=True)
            except InstallFailed as exc:
                log.info("back-off not lockable from source archives: %s", exc.message)
        entries = [e for e in prebuilt.pinned(text, self.resolver.data.prebuilt) if await self._usable(e)]
        if entries:
            substituted, overrides = prebuilt.requirements(requested, entries)
            try:
                # The mode that locked the original: wheels only could settle on an old release of a dependent
                # package whose newer ones need a pure-Python source archive (face_recognition_models).
                again, _ = await self._compile(substituted, constraints, jail, overrides, sources=with_sources)
                text = prebuilt.annotate(again, entries)
            except InstallFailed as exc:
                log.info("prebuilt substitutes %s not lockable: %s", [e.distribution for e in entries], exc.message)
        return Lock(text=text, components=tuple(components(text, None, provenance))), with_sources

    async def _usable(self, entry: Prebuilt) -> bool:
        refusal = await asyncio.to_thread(prebuilt.ships_module, self.resolver.long_tail.pypi, entry)
        if refusal is not None:
            log.warning("prebuilt substitute %s for %s not used: %s", entry.distribution, entry.project, refusal)
        return refusal is None

    async def _compile(
        self,
        requested: Sequence[str],
        constraints: Sequence[str],
        jail: InstallJail,
        overrides: str = "",
        *,
        sources: bool = False,
    ) -> tuple[str, bool]:
        """The lock text, and whether source archives had to be allowed for it."""
        files = {
            "requirements.in": "\n".join(requested) + "\n-c constraints.txt\n",
            "constraints.txt": "\n".join(constraints) + "\n",
            "overrides.txt": overrides,
        }
        argv = [
            UV,
            "pip",
            "compile",
            f"{INSTALL_INPUTS}/requirements.in",
            "--override",
            f"{INSTALL_INPUTS}/overrides.txt",
            "--generate-hashes",
            "--no-header",
            "--no-annotate",
            "--quiet",
            "--python",
            TARGET_PYTHON,
            *self._index_args(),
        ]
        stdout, with_sources = await _wheels_then_sources(jail, argv, files, sources_only=sources)
        return enforce_declared_hashes(stdout, requested), with_sources

    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        await run_installer(jail, [UV, "venv", jail.env_mount, "--python", TARGET_PYTHON, "--quiet", "--no-config"])
        await self.sync(lock, jail, fresh=True)
        return list(lock.components)

    async def sync(self, lock: Lock, jail: InstallJail, *, fresh: bool = False) -> None:
        """Install ``lock`` into the venv being built (``fresh``: a new venv), leaving exactly the lock's pins."""
        lock_file = f"{INSTALL_INPUTS}/lock.txt"
        command = ["install", "--no-deps", "-r", lock_file] if fresh else ["sync", lock_file]
        # No --compile-bytecode here: the ``Bytecode`` companion compiles it after the environment is sealed.
        argv = [UV, "pip", *command, "--python", f"{jail.build_mount}/bin/python", "--require-hashes"]
        argv += ["--link-mode", "copy", "--quiet", *self._index_args()]
        await _wheels_then_sources(jail, argv, {"lock.txt": lock.text}, INSTALL_TIMEOUT)

    async def install_target(self, lock: Lock, jail: InstallJail) -> None:
        """Install ``lock`` as a plain folder of packages (no venv) into the jail's build folder, bytecode compiled
        beside the sources so the folder works wherever it is mounted (cloche's own tools, e.g. the kernel)."""
        argv = [UV, "pip", "install", "--no-deps", "-r", f"{INSTALL_INPUTS}/lock.txt", "--target", jail.build_mount]
        argv += ["--python", TARGET_PYTHON, "--require-hashes", "--compile-bytecode", "--link-mode", "copy"]
        await _wheels_then_sources(
            jail, [*argv, "--quiet", *self._index_args()], {"lock.txt": lock.text}, INSTALL_TIMEOUT
        )

    async def verify(self, detection: Detection, lock: Lock, jail: InstallJail) -> Verification | None:
        found = detection.details
        if not isinstance(found, PythonDetection) or not found.imports:
            return None
        requirements = list(detection.requested)
        pinned = {canonicalize_name(c.name) for c in lock.components}
        if all(_requirement_name(r) in pinned for r in detection.optional):
            requirements += detection.optional  # the lock holds the optional imports' projects too
        environment = BuiltVenv(self, jail, found.constraints, detection.source)
        needs = platform_only.installable(found.imports, lock.text)
        verified = await recovery.verify(needs, requirements, lock, environment, self.resolver)
        substituted = prebuilt.steps(verified.lock.text, verified.failures) + environment.display_steps()
        return dataclasses.replace(verified, steps=substituted + verified.steps) if substituted else verified

    def unresolved_in(self, lock: Lock) -> tuple[Mapping[str, str | None], ...]:
        return platform_only.unresolved(lock.text)

    def check_key(self, detection: Detection) -> str | None:
        found = detection.details
        if not isinstance(found, PythonDetection) or not found.imports:
            return None
        needs = json.dumps([n.to_dict() for n in found.imports], sort_keys=True)
        return hashlib.sha256(needs.encode()).hexdigest()

    async def check(self, detection: Detection, jail: InstallJail) -> bool:
        found = detection.details
        if not isinstance(found, PythonDetection) or not found.imports:
            return True
        answers = await check_imports(jail, ENV_MOUNT, found.imports)
        return all(answer.ok for module, answer in answers.items() if module in {n.module for n in found.imports})

    def site_packages(self, environment: Path) -> Path | None:
        lib = environment / "lib"
        try:
            versions = sorted(p for p in os.listdir(lib) if p.startswith("python"))
        except OSError:
            return None
        return lib / versions[-1] / "site-packages" if versions else None

    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        return components(lock.text, self.site_packages(environment), provenance)

    def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
        paths = [SANDBOX_DIR, *(f"{SANDBOX_DIR}/{p}" for p in detection.sys_path)]
        env = {
            "VIRTUAL_ENV": ENV_MOUNT,
            "PATH": f"{ENV_MOUNT}/bin:/usr/local/bin:/usr/bin:/bin",
        }
        if detection.sys_path:
            env["PYTHONPATH"] = ":".join(paths)
        mounts = [Mount("ro-bind", ENV_MOUNT, environment)]
        pycache = environment.with_name(companion_key(environment.name))
        if (pycache / META).is_file():
            # Precompiled bytecode, read-only: Python reads it and never writes (a workspace module's bytecode
            # is never cached, so an edit is always seen).
            mounts.append(Mount("ro-bind", PYCACHE_MOUNT, pycache))
            env["PYTHONPYCACHEPREFIX"] = PYCACHE_MOUNT
        return ExecEnv(mounts=tuple(mounts), env=env, display=display.needed(environment))


def _requirement_name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement.split(" --hash=")[0]).name)


async def _wheels_then_sources(
    jail: InstallJail,
    argv: Sequence[str],
    files: Mapping[str, str],
    timeout: float | None = None,
    *,
    sources_only: bool = False,
) -> tuple[str, bool]:
    """Run a uv step first on wheels only with the shared cache (no third-party code runs); when that fails,
    again allowing source builds, which the jail gives a private cache. Returns its stdout, and whether sources
    were allowed (``sources_only``: straight away)."""
    error = ""
    for shared in (False,) if sources_only else (True, False):
        extra = ["--only-binary", ":all:"] if shared else []
        result = await jail.run([*argv, *extra], files=files, shared_cache=shared, timeout_seconds=timeout)
        if result.status == "succeeded":
            return result.stdout, not shared
        error = installer_error(result)
    raise InstallFailed(error)
