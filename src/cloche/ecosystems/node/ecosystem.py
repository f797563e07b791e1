"""Running Node.js entry files (dependency installation for Node grows here)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cloche.ecosystems.base import Component, Detection, ExecEnv, InstallFailed, InstallJail, Lock


class NodeEcosystem:
    name: str = "node"
    extensions: tuple[str, ...] = (".js", ".mjs", ".cjs")
    env_mount: str = "/sandbox/node_modules"

    def command(self, entry: str, args: list[str]) -> list[str]:
        return ["node", entry, *args]

    def detect(self, root: Path, entry: str) -> Detection:
        return Detection(self.name, "none", (), hashlib.sha256(b"node:none").hexdigest())

    def abi(self) -> str:
        return "node"

    async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
        raise InstallFailed("Node dependency installation is not available yet")

    async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
        raise InstallFailed("Node dependency installation is not available yet")

    def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
        return list(lock.components)

    def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
        return ExecEnv()
