"""PEP 723 inline script metadata: the ``# /// script`` block at the top of an entry file."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass

from cloche.ecosystems.python.manifests.checks import check_requirement, check_specifier, line_of
from cloche.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class InlineScript:
    path: str
    line: int
    sha256: str  # of the block only, so editing the code below it changes nothing
    requirements: tuple[str, ...]
    requires_python: str | None


_INLINE = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def parse_inline(source: bytes | str, *, path: str) -> InlineScript | None:
    """The ``# /// script`` block of an entry file, or None; two script blocks are an error."""
    text = source.decode("utf-8-sig", errors="replace") if isinstance(source, bytes) else source
    text = text.replace("\r\n", "\n")
    blocks = [m for m in _INLINE.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    line = text.count("\n", 0, blocks[0].start()) + 1
    if len(blocks) > 1:
        second = text.count("\n", 0, blocks[1].start()) + 1
        raise InvalidRequest(
            f"{path}:{second}: a second '# /// script' block (the first is at line {line}); PEP 723 allows only one"
        )
    block = blocks[0]
    content = "".join(
        raw[2:] if raw.startswith("# ") else raw[1:] for raw in block.group("content").splitlines(keepends=True)
    )
    try:
        meta = tomllib.loads(content)
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest(f"{path}:{line}: the '# /// script' block is not valid TOML: {e}") from e
    deps = meta.get("dependencies", [])
    if not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
        raise InvalidRequest(f"{path}:{line}: 'dependencies' in the script block must be a list of strings")
    requires_python = meta.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise InvalidRequest(f"{path}:{line}: 'requires-python' in the script block must be a string")

    def where(needle: str) -> str:
        at = line_of(block.group(0), needle)
        return f"{path}:{line + at - 1 if at else line}"

    return InlineScript(
        path,
        line,
        hashlib.sha256(block.group(0).encode()).hexdigest(),
        tuple(dict.fromkeys(check_requirement(d, where(d)) for d in deps)),
        check_specifier(requires_python, where("requires-python")) if requires_python is not None else None,
    )
