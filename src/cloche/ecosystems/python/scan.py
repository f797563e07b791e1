"""Which third-party modules an entry file needs, found by parsing it and the local modules it reaches.

Only files reachable through imports are read (never the whole workspace), and only through
``safefs``, so a planted symlink is reported, not followed. Local modules are resolved the way
``python3 <entry>`` would with the entry's directory first on sys.path, then the workspace root
and ``src/`` (which the runner may add). Parsing is pure (``import_statements.py`` reads each file's
imports): nothing is imported or executed.
"""

from __future__ import annotations

import ast
import hashlib
import posixpath
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloche.ecosystems.python.import_statements import RawImport, collect_imports, fallback_imports
from cloche.errors import ClocheError, TooLarge
from cloche.store import safefs

MAX_FILES = 5000
MAX_FILE_BYTES = 2 * 1024 * 1024


def host_stdlib() -> frozenset[str]:
    """This interpreter's standard library top-level names (plus ``__future__``)."""
    return frozenset(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True, slots=True)
class ImportRef:
    """One third-party import statement (or literal dynamic import) found in a scanned file.

    ``module`` is the dotted name as written (the ``from`` part of a from-import) and ``names``
    what a from-import takes from it, since ``from google.cloud import storage`` names a module.
    """

    module: str
    file: str
    line: int
    optional: bool
    names: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        """Dotted names that may be modules, most specific first."""
        if not self.names:
            return (self.module,)
        return tuple(f"{self.module}.{name}" for name in self.names)


@dataclass(frozen=True, slots=True)
class ScanError:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """``files`` are the scanned local files with their sha256; ``local_roots`` the search roots
    ('.' is the workspace root) under which at least one top-level local import was found."""

    entry: str
    imports: tuple[ImportRef, ...]
    files: tuple[tuple[str, str], ...]
    errors: tuple[ScanError, ...]
    local_roots: tuple[str, ...]
    truncated: bool

    def modules(self) -> dict[str, bool]:
        """Third-party dotted names (see ``ImportRef.candidates``) -> optional; required wins."""
        out: dict[str, bool] = {}
        for ref in self.imports:
            for name in ref.candidates:
                out[name] = out.get(name, True) and ref.optional
        return dict(sorted(out.items()))


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


class _Scanner:
    def __init__(
        self, root: Path, entry: str, extra: list[str], stdlib: frozenset[str], max_files: int, max_bytes: int
    ) -> None:
        self.root = root
        self.stdlib = stdlib
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._types: dict[str, str | None] = {}
        self.queue: deque[str] = deque()
        self.queued: set[str] = set()
        self.files: dict[str, str] = {}
        self.imports: list[ImportRef] = []
        self.errors: dict[ScanError, None] = {}  # ordered and deduplicated
        self.roots_used: set[str] = set()
        self.truncated = False
        entry_dir = posixpath.dirname(entry)
        bases = [entry_dir, "", *extra, "src"]
        self.bases = [b for i, b in enumerate(bases) if b not in bases[:i] and self.kind(b) == "dir"]

    def kind(self, rel: str) -> str | None:
        """'file', 'dir', 'symlink', 'other' or None (missing or unreachable); cached per scan."""
        if rel not in self._types:
            try:
                info = safefs.lookup(self.root, rel or ".")
            except (ClocheError, OSError):
                info = None  # a symlink on the way (or unreadable): nothing we may read through it
            self._types[rel] = info.type if info is not None else None
        return self._types[rel]

    def error(self, rel: str, message: str, line: int | None = None) -> None:
        self.errors[ScanError(rel, line, message)] = None

    def enqueue(self, rel: str) -> None:
        if rel in self.queued:
            return
        if len(self.queued) >= self.max_files:
            if not self.truncated:
                self.error(rel, f"not scanned: more than {self.max_files} local files")
            self.truncated = True
            return
        self.queued.add(rel)
        self.queue.append(rel)

    def _module_at(self, base: str, name: str, *, namespace: bool = True) -> tuple[str | None, bool]:
        """(package dir or None, found) for ``name`` directly inside ``base``; queues files to scan.

        Python's order within one directory: a regular package, then a module, then (only when
        allowed) a directory without ``__init__.py`` as a namespace package.
        """
        path = _join(base, name)
        kind = self.kind(path)
        if kind == "dir":
            if self._source_file(_join(path, "__init__.py")):
                return path, True
        elif kind is not None:
            self.error(path, "not scanned: not a regular directory or file")
            return None, True
        if self._source_file(path + ".py"):
            return None, True
        if kind == "dir" and namespace:
            return path, True
        return None, False

    def _source_file(self, path: str) -> bool:
        """Whether something is at ``path``: a regular file is queued to scan, anything else reported."""
        kind = self.kind(path)
        if kind == "file":
            self.enqueue(path)
        elif kind is not None:
            self.error(path, "not scanned: not a regular file")
        return kind is not None

    def _top(self, name: str, subs: Sequence[str]) -> tuple[str | None, bool]:
        # A regular package or module anywhere on the path wins over a namespace portion.
        for base in self.bases:
            pkg, found = self._module_at(base, name, namespace=False)
            if found:
                self.roots_used.add(base or ".")
                return pkg, True
        # A directory without __init__.py is only taken for a namespace package when it holds what
        # is imported from it: a 'yaml/' of config files must not hide PyYAML, which would win at
        # run time anyway once installed.
        for base in self.bases:
            path = _join(base, name)
            if self.kind(path) == "dir" and any(
                self.kind(_join(path, sub)) == "dir" or self.kind(_join(path, sub) + ".py") is not None for sub in subs
            ):
                self.roots_used.add(base or ".")
                return path, True
        return None, False

    def _descend(self, pkg: str | None, parts: list[str], names: tuple[str, ...]) -> None:
        for part in parts:
            if pkg is None:
                return
            pkg, found = self._module_at(pkg, part)
            if not found:
                return
        if pkg is not None:
            for name in names:  # 'from pkg import sub' imports pkg/sub when it is a submodule
                self._module_at(pkg, name)

    def handle(self, rel: str, raw: RawImport) -> None:
        if raw.level:
            base = posixpath.dirname(rel)
            for _ in range(raw.level - 1):
                if not base:
                    return  # climbs out of the workspace: nothing local to follow
                base = posixpath.dirname(base)
            self._descend(base, raw.module.split(".") if raw.module else [], raw.names)
            return
        parts = raw.module.split(".")
        pkg, local = self._top(parts[0], parts[1:2] or raw.names)
        if local:
            self._descend(pkg, parts[1:], raw.names)
        elif parts[0] not in self.stdlib and parts[0] != "__main__":
            self.imports.append(ImportRef(raw.module, rel, raw.line, raw.optional, raw.names))

    def scan_file(self, rel: str, *, is_entry: bool) -> None:
        try:
            data = safefs.read_file(self.root, rel, max_bytes=self.max_bytes)
        except TooLarge:
            self.error(rel, f"not scanned: larger than {self.max_bytes} bytes")
            return
        except (ClocheError, OSError) as e:
            if is_entry:
                raise
            self.error(rel, f"not scanned: {e.message if isinstance(e, ClocheError) else e.strerror}")
            return
        self.scan_source(rel, data)

    def scan_source(self, rel: str, data: bytes) -> None:
        self.files[rel] = hashlib.sha256(data).hexdigest()
        try:
            tree = ast.parse(data, filename=rel)
            dynamic = b"import_module" in data or b"__import__" in data
            # bytes.splitlines() breaks lines where the tokenizer does (\n, \r\n, \r).
            lines = [n for n, text in enumerate(data.splitlines(), 1) if b"import" in text]
            raws = collect_imports(tree, dynamic=dynamic, import_lines=lines)
        except SyntaxError as e:
            # Often just syntax newer than this host's parser: keep what the lines plainly say.
            self.error(rel, f"syntax error: {e.msg}; imports read line by line", e.lineno)
            raws = fallback_imports(data)
        except (ValueError, RecursionError, MemoryError) as e:
            self.error(rel, f"cannot parse ({type(e).__name__}); imports read line by line")
            raws = fallback_imports(data)
        for raw in raws:
            self.handle(rel, raw)


def scan_imports(
    root: Path,
    entry: str,
    *,
    stdlib: frozenset[str],
    max_files: int = MAX_FILES,
    max_file_bytes: int = MAX_FILE_BYTES,
    extra_roots: Sequence[str] = (),
    code: bytes | None = None,
) -> ScanResult:
    """Third-party imports of ``entry`` and the local modules it reaches, transitively.

    Local modules are looked up in the entry's directory, the workspace root, ``extra_roots``
    (workspace-relative, e.g. a project's ``app/src``) and ``src``, in that order.

    The entry itself must be a readable regular file (cloche errors otherwise); problems with
    other files (syntax errors, symlinks, size) are recorded in ``errors`` and skipped. With ``code``
    (``python -c CODE``), the entry is that source instead, placed at ``entry`` (in the command's folder).
    """
    entry = str(safefs.validate_relpath(entry))
    extra = [str(safefs.validate_relpath(r)) for r in extra_roots]
    scanner = _Scanner(root, entry, extra, stdlib, max_files, max_file_bytes)
    scanner.queued.add(entry)
    if code is None:
        scanner.scan_file(entry, is_entry=True)
    else:
        scanner.scan_source(entry, code)
    while scanner.queue:
        scanner.scan_file(scanner.queue.popleft(), is_entry=False)
    return ScanResult(
        entry=entry,
        imports=tuple(scanner.imports),
        files=tuple(sorted(scanner.files.items())),
        errors=tuple(scanner.errors),
        local_roots=tuple(b or "." for b in scanner.bases if (b or ".") in scanner.roots_used),
        truncated=scanner.truncated,
    )
