"""Small modules with one concern: a module under src/ longer than LIMIT lines must say why in its docstring,
in a paragraph that starts with "Size:" (e.g. one invariant that every function serves)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "cloche"
LIMIT = 400


def _long_modules_without_a_reason(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines <= limit:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(paragraph.startswith("Size: ") for paragraph in doc.split("\n\n")):
            found.append(f"{path.relative_to(root.parent)}: {lines} lines, no 'Size:' paragraph in its docstring")
    return found


def test_long_modules_say_why_they_are_long() -> None:
    assert _long_modules_without_a_reason(SRC, LIMIT) == []


def test_the_rule_catches_a_long_module_and_accepts_a_reason(tmp_path: Path) -> None:
    body = "x = 1\n" * (LIMIT + 1)
    (tmp_path / "long.py").write_text('"""Does one thing."""\n' + body)
    (tmp_path / "reasoned.py").write_text('"""Does one thing.\n\nSize: one invariant.\n"""\n' + body)
    (tmp_path / "short.py").write_text("x = 1\n")
    assert _long_modules_without_a_reason(tmp_path, LIMIT) == [
        f"{tmp_path.name}/long.py: {LIMIT + 2} lines, no 'Size:' paragraph in its docstring"
    ]
