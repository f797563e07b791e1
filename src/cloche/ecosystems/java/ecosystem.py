"""Java: resolve declared Maven coordinates in the install jail, keep the jars in an environment, compile and
run the entry with the host JDK in the exec jail.

Environment (built at ``/opt/cloche/env/java``, bound read-only there in runs): ``lib/*.jar`` and
``classpath.txt``. Resolution and download are done by ``maven.py`` (see its docstring for why not Maven's
own plugins) with the shared cache as its local repository: it runs no third-party code. With nothing
declared, the environment is empty and shared by every such sandbox; no install step runs.

Runs: ``run.py`` compiles with javac into ``/sandbox/.cloche/java/`` only when a source changed, then execs
``java`` with the environment's classpath.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from cloche.ecosystems.base import (
    INSTALL_CACHE,
    Component,
    Detection,
    ExecEnv,
    InstallFailed,
    InstallJail,
    Lock,
    detection_of,
)
from cloche.ecosystems.common import (
    ENV_ROOT,
    JailScripts,
    PackageSource,
    RunnerEcosystem,
    run_installer,
)
from cloche.ecosystems.java.detect import JavaDetection
from cloche.ecosystems.java.detect import detect as detect_java
from cloche.errors import ClocheError
from cloche.jail.profile import SANDBOX_DIR, Mount
from cloche.sbom.licenses import maven_license_to_spdx
from cloche.store import safefs

ENV_MOUNT = f"{ENV_ROOT}/java"
TOOLS = "/opt/cloche/java-tools"
JAVA = "/usr/bin/java"  # the JDK every jail sees, through /etc/alternatives
INSTALL_TIMEOUT = 900.0
HERE = Path(__file__).resolve().parent
EMPTY_LOCK = json.dumps({"artifacts": []}, indent=1)


def purl(group: str, artifact: str, version: str) -> str:
    return f"pkg:maven/{quote(group)}/{quote(artifact)}@{quote(version)}"


def components(lock_text: str, provenance: str) -> list[Component]:
    out = []
    for a in json.loads(lock_text)["artifacts"]:
        declared = a.get("license")
        license_ = (maven_license_to_spdx(declared, None) or declared) if declared else None
        out.append(
            Component(
                name=f"{a['group']}:{a['artifact']}",
                version=a["version"],
                purl=purl(a["group"], a["artifact"], a["version"]),
                license=license_,
                hashes=(f"sha256:{a['sha256']}",) if a.get("sha256") else (),
                provenance=provenance,
            )
        )
    return out


class JavaEcosystem(RunnerEcosystem):
    name = "java"
    extensions = (".java",)
    env_mount = ENV_MOUNT

    def __init__(self, repository: str = "https://repo.maven.apache.org/maven2", stage: Path | None = None) -> None:
        """``stage``: a folder jails can reach, for the scripts when the checkout is not traversable."""
        self.repository = PackageSource(repository, "maven")
        self.scripts = JailScripts(HERE, TOOLS, stage, "java")
        self.install_mounts = (self.scripts.mount("maven.py"), *self.repository.mounts)
        self.run_mounts = (self.scripts.mount("run.py"),)

    def detect(self, root: Path, entry: str) -> Detection:
        found = detect_java(root, entry)
        return detection_of(self.name, found, unresolved=found.unresolved)

    def abi(self) -> str:
        # Jars are platform-neutral, but the JDK decides which class files run: key on its major version.
        version = "unknown"
        try:
            release = Path(os.path.realpath(JAVA)).parent.parent / "release"
            for line in release.read_text().splitlines():
                if line.startswith("JAVA_VERSION="):
                    version = line.split("=", 1)[1].strip('"').split(".")[0]
        except OSError:
            pass
        return f"jdk-{version}"

    def _argv(self, command: str) -> list[str]:
        repo = self.repository.jail_url
        return self.scripts.argv("maven.py", command, "--repo", repo, "--cache", f"{INSTALL_CACHE}/repository")

    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
        found = detection.details
        assert isinstance(found, JavaDetection)
        if found.pom is None and not found.coordinates:
            return Lock(text=EMPTY_LOCK, components=())  # nothing declared: nothing to ask a registry
        # The request goes in as a file: stdin is not a jail input.
        argv = ["/bin/sh", "-c", 'exec "$@" < /work/request.json', "maven", *self._argv("resolve")]
        result = await run_installer(jail, argv, files={"request.json": json.dumps(found.request())})
        try:
            text = json.dumps(json.loads(result.stdout), indent=1, sort_keys=True)
        except ValueError as e:
            raise InstallFailed(f"the Maven resolver printed no lock: {e}") from e
        return Lock(text=text, components=tuple(components(text, detection.source)))

    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        if not json.loads(lock.text)["artifacts"]:
            return []
        argv = ["/bin/sh", "-c", 'exec "$@" < /work/lock.json', "maven", *self._argv("fetch"), "--dest", ENV_MOUNT]
        files = {"lock.json": lock.text}
        await run_installer(jail, argv, files=files, timeout_seconds=INSTALL_TIMEOUT)
        return list(lock.components)

    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        return components(lock.text, provenance)

    def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
        try:
            listed = safefs.read_file(environment, "classpath.txt", max_bytes=1024 * 1024).decode()
        except (ClocheError, OSError):
            listed = ""
        jars = [line for line in listed.splitlines() if line.strip()]
        found = detection.details
        env = {"CLOCHE_JAVA_CLASSPATH": ":".join(jars), "CLASSPATH": ":".join([".", *jars])}
        if isinstance(found, JavaDetection):
            env["CLOCHE_JAVA_RESOURCES"] = ":".join(f"{SANDBOX_DIR}/{r}" for r in found.resources)
            if found.main_class:
                env["CLOCHE_JAVA_MAIN"] = found.main_class
        mounts = (*self.run_mounts, Mount("ro-bind", ENV_MOUNT, environment))
        return ExecEnv(mounts=mounts, env=env)
