"""Python: detect what an entry needs, resolve it with uv to an exact lock, build a venv, expose it.

The environment is a venv built *at* ``/opt/cloche/env/python`` inside the install jail, so script shebangs and
paths recorded at install time are the ones every run sees when the sealed entry is mounted there (outside the
workspace: a user's ``deps/`` folder is never hidden).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from cloche.ecosystems.base import Component, Detection, ExecEnv, InstallFailed, InstallJail, Lock
from cloche.ecosystems.common import ENV_ROOT
from cloche.ecosystems.python.detect import detect as detect_python
from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.lockfile import components, enforce_declared_hashes
from cloche.jail.profile import SANDBOX_DIR, Mount
from cloche.store.envstore import META, companion_key

TARGET_PYTHON = "/usr/bin/python3"
ENV_MOUNT = f"{ENV_ROOT}/python"
UV = "/opt/cloche/bin/uv"
PYCACHE_MOUNT = "/opt/cloche/pycache"
WHEELS = "/opt/cloche/wheels"
INSTALL_TIMEOUT = 900.0


class PythonEcosystem:
    name: str = "python"
    extensions: tuple[str, ...] = (".py",)
    env_mount: str = ENV_MOUNT
    pycache_mount: str = PYCACHE_MOUNT

    def __init__(
        self,
        index_url: str = "https://pypi.org/simple",
        wheel_dir: Path | None = None,
        allow_unknown_imports: bool = False,
    ) -> None:
        self.index_url = index_url
        self.wheel_dir = wheel_dir
        self.allow_unknown_imports = allow_unknown_imports

    def command(self, entry: str, args: list[str]) -> list[str]:
        return ["python3", entry, *args]

    # detection

    def detect(self, root: Path, entry: str) -> Detection:
        found = detect_python(root, entry, importmap=ImportMap.load(), allow_unknown=self.allow_unknown_imports)
        requested = tuple(found.requirements)
        return Detection(
            ecosystem=self.name,
            source=found.source,
            requested=requested,
            fingerprint=found.fingerprint,
            optional=tuple(found.optional_requirements),
            unlisted=tuple(s.to_dict() for s in found.unlisted),
            unresolved=tuple(u.to_dict() for u in found.unresolved),
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

    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
        details = detection.details
        constraints = "\n".join(getattr(details, "constraints", ()) or ()) + "\n"
        attempts = [detection.requested + detection.optional]
        if detection.optional:
            attempts.append(detection.requested)  # optional imports are never fatal
        error = ""
        for requested in attempts:
            files = {
                "requirements.in": "\n".join(requested) + "\n-c constraints.txt\n",
                "constraints.txt": constraints,
            }
            argv = [
                UV,
                "pip",
                "compile",
                "/work/requirements.in",
                "--generate-hashes",
                "--no-header",
                "--no-annotate",
                "--quiet",
                "--python",
                TARGET_PYTHON,
                *self._index_args(),
            ]
            # First wheels only with the shared cache (no third-party code runs); then, if that fails,
            # allow source builds, which the jail gives a private cache.
            for shared in (True, False):
                extra = ["--only-binary", ":all:"] if shared else []
                result = await jail.run([*argv, *extra], files=files, shared_cache=shared)
                if result.status == "succeeded":
                    text = enforce_declared_hashes(result.stdout, requested)
                    return Lock(text=text, components=tuple(components(text, None, detection.source)))
                error = _installer_error(result.stderr or result.output)
        raise InstallFailed(error)

    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        created = await jail.run([UV, "venv", jail.env_mount, "--python", TARGET_PYTHON, "--quiet", "--no-config"])
        if created.status != "succeeded":
            raise InstallFailed(_installer_error(created.stderr or created.output))
        # No --compile-bytecode here: compiling all of numpy and pandas takes longer than installing them. The
        # bytecode is built right after, off the exec's path, as a companion entry (see ``precompile``).
        argv = [
            UV,
            "pip",
            "install",
            "--python",
            f"{jail.env_mount}/bin/python",
            "-r",
            "/work/lock.txt",
            "--require-hashes",
            "--no-deps",
            "--link-mode",
            "copy",
            "--quiet",
            *self._index_args(),
        ]
        error = ""
        for shared in (True, False):
            extra = ["--only-binary", ":all:"] if shared else []
            result = await jail.run(
                [*argv, *extra],
                files={"lock.txt": lock.text},
                shared_cache=shared,
                timeout_seconds=INSTALL_TIMEOUT,
            )
            if result.status == "succeeded":
                return list(lock.components)
            error = _installer_error(result.stderr or result.output)
        raise InstallFailed(error)

    def site_packages(self, environment: Path) -> Path | None:
        lib = environment / "lib"
        try:
            versions = sorted(p for p in os.listdir(lib) if p.startswith("python"))
        except OSError:
            return None
        return lib / versions[-1] / "site-packages" if versions else None

    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        return components(lock.text, self.site_packages(environment), provenance)

    async def precompile(self, jail: InstallJail) -> bool:
        """Compile the environment's modules into ``jail.build_mount`` laid out as a pycache prefix tree.

        Runs only the bytecode compiler (no package code), with the environment mounted read-only at its usual
        path so the tree mirrors the paths runs import from.
        """
        # The standard library too: with a pycache prefix set, Python looks for *every* module's bytecode in the
        # prefix tree, so a stdlib missing there would be recompiled from source on each run.
        stdlib = "/usr/lib/" + os.path.basename(os.path.realpath(TARGET_PYTHON))  # /usr/lib/python3.X
        argv = [TARGET_PYTHON, "-m", "compileall", "-q", "-j", "0", f"{ENV_MOUNT}/lib", stdlib]
        result = await jail.run(argv, env={"PYTHONPYCACHEPREFIX": PYCACHE_MOUNT}, shared_cache=False)
        return result.status == "succeeded"

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
        return ExecEnv(mounts=tuple(mounts), env=env)


def _installer_error(text: str) -> str:
    """uv's error without its progress noise; it already names the package that failed."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-30:]) or "the installer failed without a message"
