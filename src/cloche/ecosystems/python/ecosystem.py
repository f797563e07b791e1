"""Running Python entry files."""

from __future__ import annotations


class PythonEcosystem:
    name: str = "python"
    extensions: tuple[str, ...] = (".py",)

    def command(self, entry: str, args: list[str]) -> list[str]:
        return ["python3", entry, *args]
