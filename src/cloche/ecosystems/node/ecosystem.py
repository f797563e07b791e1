"""Node.js: detect what an entry needs, lock it with npm, install it with ``npm ci``, expose it.

Layout. An environment is an npm project folder (package.json, package-lock.json, node_modules/),
built in the install jail at ``/opt/cloche/env/node`` and bound read-only at the same path in runs, so
paths recorded at install time (native addons, .bin links) stay true. Its ``node_modules`` is also
bound at ``/node_modules``: Node resolves a bare specifier by walking up from the importing file's
folder, so ``/sandbox/main.js`` finds ``/sandbox/node_modules`` and then ``/node_modules``, for
``require`` and ``import`` alike (ESM ignores NODE_PATH). Binding at ``/node_modules`` rather than
``/sandbox/node_modules`` keeps a mount point out of the workspace, and a ``node_modules`` the
sandbox makes for itself still wins.

Local registries. npm speaks only HTTP(S) to a registry, so a ``file://`` registry folder (tests, offline
mirrors) is served to it by ``local_registry.js``, started inside the install jail on the jail's own
loopback at a fixed port (each jail has its own network namespace, so the lock's URLs are the same in
every jail).

Caches. ``npm install --package-lock-only --ignore-scripts`` (resolve) runs no package code and uses
the shared npm cache. ``npm ci`` uses it too when no package in the lock has install scripts
(``--ignore-scripts``); otherwise the scripts run in the install jail with a private, throw-away cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloche.ecosystems.base import (
    INSTALL_CACHE,
    Component,
    Detection,
    Ecosystem,
    ExecEnv,
    InstallFailed,
    InstallJail,
    Lock,
    Verification,
    detection_of,
)
from cloche.ecosystems.common import ENV_ROOT, LOCAL_SOURCES, PackageSource, installer_error, run_installer
from cloche.ecosystems.node import lockfile
from cloche.ecosystems.node.accumulate import NodeNeeds
from cloche.ecosystems.node.browsers import SKIP_BROWSER_DOWNLOADS, browser_env
from cloche.ecosystems.node.detect import NodeDetection, popular
from cloche.ecosystems.node.detect import detect as detect_node
from cloche.ecosystems.node.install_errors import outside_world
from cloche.ecosystems.node.recovery import verify_and_repair
from cloche.ecosystems.node.registry_facts import RegistryFacts
from cloche.ecosystems.node.release_fit import NODE_HEADER, node_header_fields, node_version
from cloche.ecosystems.node.vetting import Vetting
from cloche.ecosystems.release_age import MinimumAge
from cloche.jail.profile import Mount

ENV_MOUNT = f"{ENV_ROOT}/node"
RUN_MODULES = "/node_modules"
INSTALL_TIMEOUT = 900.0
DEFAULT_REGISTRY = "https://registry.npmjs.org/"

# npm prints to stdout too; everything but the lock goes to stderr, which only an error shows.
_RESOLVE = (
    "set -e; mkdir -p /tmp/project; cp /work/package.json /tmp/project/; "
    "if [ -f /work/package-lock.json ]; then cp /work/package-lock.json /tmp/project/; fi; "
    "cd /tmp/project; npm install --package-lock-only --ignore-scripts >&2; cat package-lock.json"
)
_BUILD = f"set -e; cd {ENV_MOUNT}; cp /work/package.json /work/package-lock.json .; npm ci $CLOCHE_NPM_FLAGS >&2"
LOCAL_REGISTRY_JS = Path(__file__).with_name("local_registry.js")
LOCAL_REGISTRY_PORT = 4873
_SERVE_LOCAL = (
    f"node /work/local_registry.js {LOCAL_SOURCES}/npm {LOCAL_REGISTRY_PORT} /tmp/registry.ready >/dev/null 2>&1 & "
    "i=0; while [ ! -s /tmp/registry.ready ]; do i=$((i+1)); "
    "if [ $i -gt 200 ]; then echo 'the local npm registry did not start' >&2; exit 1; fi; sleep 0.05; done; "
)


class NodeEcosystem(Ecosystem):
    name = "node"
    extensions = (".js", ".mjs", ".cjs")
    env_mount = ENV_MOUNT

    def __init__(
        self, registry: str = DEFAULT_REGISTRY, facts_cache: Path | None = None, min_age_days: float = 90.0
    ) -> None:
        self.registry = registry
        # Scanned packages are vouched for (and their releases chosen) from registry facts, host side.
        facts = RegistryFacts(registry, facts_cache)
        self.vetting = Vetting(facts, popular, node_version(NODE_HEADER), MinimumAge(min_age_days))
        self.accumulates = NodeNeeds()
        self.install_mounts = PackageSource(registry, "npm").mounts
        self.local = bool(self.install_mounts)

    def command(self, entry: str, args: list[str]) -> list[str]:
        return ["node", entry, *args]

    def detect(self, root: Path, entry: str) -> Detection:
        """Reads the workspace, and for a scan the registry's facts about the scanned packages (host side,
        through the facts cache): vouching and choosing releases need them. Nothing runs."""
        found = detect_node(root, entry, self.vetting)
        return detection_of(self.name, found, unresolved=found.unresolved, resolved=found.resolved)

    def abi(self) -> str:
        # Native addons are built for one NODE_MODULE_VERSION; read it from the installed headers
        # (ecosystems never spawn, so not from `node --version`).
        found = node_header_fields(NODE_HEADER)
        return f"node-{found.get('MAJOR', '?')}-abi{found.get('MODULE', '?')}-{lockfile.NPM_OS}-{lockfile.NPM_CPU}"

    def installer_env(self) -> Mapping[str, str]:
        return {
            "npm_config_cache": INSTALL_CACHE,
            "npm_config_registry": self._jail_registry(),
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "npm_config_update_notifier": "false",
            "npm_config_loglevel": "error",
            "npm_config_logs_dir": "/tmp/npm-logs",
            "npm_config_progress": "false",
            # node-gyp builds native addons against the installed Node's own headers (/usr/include/node)
            # instead of downloading them from nodejs.org, which install jails cannot reach.
            "npm_config_nodedir": NODE_HEADER.parent.parent.parent.as_posix(),
            # npm bundles its own roots; installers also trust the host's store, so registries behind a
            # TLS-inspecting gateway work like uv's. (Not set for runs: parsing the whole store costs every node
            # start ~70 ms; a sandbox behind a TLS-intercepting proxy sets it in its env.)
            "NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt",
            # Browser automation packages install without downloading their browser (browsers.py).
            **SKIP_BROWSER_DOWNLOADS,
        }

    def _jail_registry(self) -> str:
        return f"http://127.0.0.1:{LOCAL_REGISTRY_PORT}/" if self.local else self.registry.rstrip("/") + "/"

    def _shell(self, script: str, files: dict[str, str]) -> list[str]:
        """argv for ``script``, preceded by serving a local registry folder when that is the registry."""
        if not self.local:
            return ["/bin/sh", "-c", script]
        files["local_registry.js"] = LOCAL_REGISTRY_JS.read_text(encoding="utf-8")
        return ["/bin/sh", "-c", _SERVE_LOCAL + script]

    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
        found = detection.details
        assert isinstance(found, NodeDetection)
        return await self._lock(found.manifest_json, found.lock, detection.source, jail)

    async def _lock(self, manifest: Mapping[str, Any], lock: str | None, source: str, jail: InstallJail) -> Lock:
        files = {"package.json": json.dumps(manifest, indent=2) + "\n"}
        if lock is not None:
            files["package-lock.json"] = lock
        result = await run_installer(jail, self._shell(_RESOLVE, files), files=files, shared_cache=True)
        text = lockfile.normalise(result.stdout)
        return Lock(text=text, components=tuple(lockfile.components(text, source)))

    async def verify(self, detection: Detection, lock: Lock, jail: InstallJail) -> Verification | None:
        """Scans only: each scanned specifier loads in the environment just built, or is backed off (recovery.py)."""
        found = detection.details
        if not isinstance(found, NodeDetection) or not found.usages:
            return None

        async def relock(manifest: Mapping[str, Any]) -> Lock:
            return await self._lock(manifest, None, detection.source, jail)

        async def rebuild(new: Lock) -> None:
            await self.build(new, jail)

        return await verify_and_repair(found, lock, jail, ENV_MOUNT, self.vetting, relock, rebuild)

    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        scripts = lockfile.runs_scripts(lock.text)
        env = {"CLOCHE_NPM_FLAGS": "" if scripts else "--ignore-scripts"}
        files = {"package.json": lockfile.manifest_of(lock.text), "package-lock.json": lock.text}
        # Install scripts are third-party code: they get a private cache, never the shared one.
        argv = self._shell(_BUILD, files)
        result = await jail.run(argv, env=env, files=files, shared_cache=not scripts, timeout_seconds=INSTALL_TIMEOUT)
        if result.status != "succeeded":
            output = result.stderr or result.output
            raise InstallFailed(outside_world(output, result.egress_denied, popular) or installer_error(result))
        return list(lock.components)

    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        modules = environment / "node_modules"
        return lockfile.components(lock.text, provenance, modules if modules.is_dir() else None)

    def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
        mounts = [Mount("ro-bind", ENV_MOUNT, environment)]
        modules = environment / "node_modules"
        if modules.is_dir():
            mounts.append(Mount("ro-bind", RUN_MODULES, modules))
        env = {"PATH": f"{RUN_MODULES}/.bin:/usr/local/bin:/usr/bin:/bin", **browser_env(modules)}
        return ExecEnv(mounts=tuple(mounts), env=env)
