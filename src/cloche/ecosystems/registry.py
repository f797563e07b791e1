"""Ordered registry of ecosystems: order is detection priority."""

from __future__ import annotations

from pathlib import PurePosixPath

from cloche.ecosystems.base import Ecosystem
from cloche.ecosystems.node.ecosystem import NodeEcosystem
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.errors import Unsupported

ECOSYSTEMS: tuple[Ecosystem, ...] = (PythonEcosystem(), NodeEcosystem())

# Languages the API accepts whose runners are not built yet: say so instead of failing obscurely.
PLANNED = {".go": "go", ".java": "java"}


def for_entry(entry: str) -> Ecosystem:
    suffix = PurePosixPath(entry).suffix.lower()
    for ecosystem in ECOSYSTEMS:
        if suffix in ecosystem.extensions:
            return ecosystem
    if suffix in PLANNED:
        raise Unsupported(f"running {PLANNED[suffix]} files is not supported yet; use a 'command' instead")
    known = ", ".join(ext for e in ECOSYSTEMS for ext in e.extensions)
    raise Unsupported(f"cannot tell how to run {entry!r}: known extensions are {known}")


def by_name(name: str) -> Ecosystem | None:
    return next((e for e in ECOSYSTEMS if e.name == name), None)
