"""The Ecosystem protocol: what each language folder provides to the service.

An ecosystem knows how to run an entry file of its language. Dependency detection, planning,
installation and inventory hang off the same protocol as each language grows them.
"""

from __future__ import annotations

from typing import Protocol


class Ecosystem(Protocol):
    """One language. Ecosystems never print, exit, chdir or spawn processes themselves."""

    name: str
    extensions: tuple[str, ...]

    def command(self, entry: str, args: list[str]) -> list[str]:
        """argv that runs ``entry`` (a workspace-relative path) inside the jail."""
        ...
