"""Running Node.js entry files."""

from __future__ import annotations


class NodeEcosystem:
    name: str = "node"
    extensions: tuple[str, ...] = (".js", ".mjs", ".cjs")

    def command(self, entry: str, args: list[str]) -> list[str]:
        return ["node", entry, *args]
