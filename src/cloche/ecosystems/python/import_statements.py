"""What one Python file imports, read from its syntax tree (or, for a file ``ast`` cannot parse, by
pattern): each import with its level, the names it takes, its line, and whether it is optional
(guarded by a handler that swallows ImportError, or under ``TYPE_CHECKING``). Pure: nothing is
imported or executed. ``scan.py`` follows these through the workspace's local modules.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Handlers that swallow a failed import make the guarded import optional.
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True, slots=True)
class RawImport:
    """One import as written: ``level`` counts a relative import's leading dots, ``names`` what a
    from-import takes."""

    module: str
    names: tuple[str, ...]
    level: int
    line: int
    optional: bool


def _catches_import_error(expr: ast.expr | None) -> bool:
    if expr is None:  # bare except
        return True
    if isinstance(expr, ast.Tuple):
        return any(_catches_import_error(e) for e in expr.elts)
    if isinstance(expr, ast.Name):
        return expr.id in _IMPORT_ERRORS
    return isinstance(expr, ast.Attribute) and expr.attr in _IMPORT_ERRORS


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _suppresses_import_error(expr: ast.expr) -> bool:
    """``with contextlib.suppress(ImportError):`` guards its body like try/except does."""
    if not isinstance(expr, ast.Call) or expr.keywords:
        return False
    func = expr.func
    named = (isinstance(func, ast.Name) and func.id == "suppress") or (
        isinstance(func, ast.Attribute) and func.attr == "suppress"
    )
    return named and any(_catches_import_error(arg) for arg in expr.args)


def _dynamic_import(call: ast.Call) -> str | None:
    """The literal absolute module of ``importlib.import_module("x")`` / ``__import__("x")``."""
    func = call.func
    if isinstance(func, ast.Name):
        if func.id not in _DYNAMIC_IMPORTERS:
            return None
    elif not (
        isinstance(func, ast.Attribute)
        and func.attr in _DYNAMIC_IMPORTERS
        and isinstance(func.value, ast.Name)
        and func.value.id == "importlib"
    ):
        return None
    if not call.args or not isinstance(call.args[0], ast.Constant):
        return None
    name = call.args[0].value
    if not isinstance(name, str) or not _dotted(name):
        return None  # relative ('.x') or computed names cannot be resolved statically
    return name


_BLOCK_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def collect_imports(
    tree: ast.Module, *, dynamic: bool = True, import_lines: Sequence[int] | None = None
) -> list[RawImport]:
    """Every import in ``tree`` with its optionality.

    Only statement blocks are walked (imports are statements), iteratively so deep nesting cannot
    recurse, and only blocks spanning one of ``import_lines`` (sorted lines containing 'import')
    when given; expressions are searched for literal dynamic imports only when ``dynamic``.
    """
    out: list[RawImport] = []
    stack: list[tuple[ast.AST, bool]] = [(stmt, False) for stmt in tree.body]
    while stack:
        node, opt = stack.pop()
        if import_lines is not None and isinstance(node, ast.stmt):
            at = bisect.bisect_left(import_lines, node.lineno)
            if at == len(import_lines) or import_lines[at] > (node.end_lineno or node.lineno):
                continue
        if isinstance(node, ast.Import):
            out.extend(RawImport(a.name, (), 0, node.lineno, opt) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names if a.name != "*")
            out.append(RawImport(node.module or "", names, node.level, node.lineno, opt))
        elif isinstance(node, ast.Try | ast.TryStar):
            guarded = opt or any(_catches_import_error(h.type) for h in node.handlers)
            # Handler bodies are fallbacks that only run when the guarded import failed.
            stack.extend((n, guarded) for n in [*node.body, *node.handlers])
            stack.extend((n, opt) for n in [*node.orelse, *node.finalbody])
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((n, True) for n in node.body)
            stack.extend((n, opt) for n in node.orelse)
        elif isinstance(node, ast.With | ast.AsyncWith) and any(
            _suppresses_import_error(item.context_expr) for item in node.items
        ):
            stack.extend((n, True) for n in node.body)
        else:
            for field in _BLOCK_FIELDS:
                block = getattr(node, field, None)
                if isinstance(block, list):
                    stack.extend((n, opt) for n in block)
    if dynamic:
        # Always optional: a computed import is a plugin or fallback more often than a dependency.
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (name := _dynamic_import(node)) is not None:
                out.append(RawImport(name, (), 0, node.lineno, True))
    out.sort(key=lambda r: r.line)
    return out


_FALLBACK = re.compile(
    r"^([ \t]*)(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)|import[ \t]+([^\n#;]*))",
    re.MULTILINE,
)


def fallback_imports(data: bytes) -> list[RawImport]:
    """Imports of a file ``ast`` cannot parse, by regex; indented ones (inside some block whose
    guard we cannot see) count as optional."""
    text = data.decode("utf-8", errors="replace")
    out: list[RawImport] = []
    line, pos = 1, 0
    for m in _FALLBACK.finditer(text):
        indent, src, names, plain = m.groups()
        line, pos = line + text.count("\n", pos, m.start()), m.start()
        optional = bool(indent)
        if plain is not None:
            for item in plain.split(","):
                module = item.split(" as ")[0].strip()
                if _dotted(module):
                    out.append(RawImport(module, (), 0, line, optional))
            continue
        level = len(src) - len(src.lstrip("."))
        module = src[level:]
        taken = tuple(n for n in (i.split(" as ")[0].strip() for i in names.strip("()").split(",")) if n.isidentifier())
        if level or _dotted(module):
            out.append(RawImport(module, taken, level, line, optional))
    return out


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))
