"""What a Python entry needs installed, decided from the workspace alone.

The first of these wins: a ``pyproject.toml`` declaring dependencies (PEP 621 or Poetry), then a
``requirements.txt`` (both searched from the entry's directory up to the workspace root), then the
entry's PEP 723 ``# /// script`` block, then a scan of its imports resolved through ``resolve.Resolver``.
Declared requirements are taken as written; scanned imports become distributions only when a resolver
layer vouches for them, because guessing a distribution from an import name is how slopsquatting works.
Only a scan asks the network (the resolver's verified long tail); suggestions for a manifest's unlisted
imports come from the shipped data alone.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cloche.ecosystems.common import detection_fingerprint, dirs_up
from cloche.ecosystems.python import manifests
from cloche.ecosystems.python.needs import ImportNeed, import_needs
from cloche.ecosystems.python.resolve import Refusal, Resolution, Resolver
from cloche.ecosystems.python.scan import MAX_FILE_BYTES, ImportRef, ScanResult, host_stdlib, scan_imports
from cloche.errors import TooLarge
from cloche.store import safefs

# Bump when the meaning of a detection changes, so environments keyed on fingerprints are rebuilt.
DETECTION_FORMAT_VERSION = 1

Source = Literal["pyproject.toml", "requirements.txt", "inline", "scan", "none"]

_DIST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A third-party import the declared requirements do not cover; ``suggested`` is the mapped
    distribution, or None when nothing vouches for one."""

    module: str
    suggested: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"module": self.module, "suggested": self.suggested}


@dataclass(frozen=True, slots=True)
class UnresolvedImport:
    module: str
    hint: str

    def to_dict(self) -> dict[str, str | None]:
        return {"module": self.module, "hint": self.hint}


@dataclass(frozen=True, slots=True)
class PythonDetection:
    """What to install for one entry, and why.

    ``requirements`` are PEP 508 strings as declared (requirements.txt lines may carry
    ``--hash=`` options) or, for a scan, bare distribution names a resolver layer vouches for;
    ``optional_requirements`` (scan only) are installed when resolvable and never fatal.
    ``unlisted`` and ``unresolved`` are advice, ``resolved`` says which layer vouched for each scanned
    import and why, ``warnings`` are scan problems; none of the four is part of the fingerprint.
    ``inputs`` pair a workspace path with its sha256 (for an inline block, the block's), or
    'import:<module>' with 'required'/'optional' for a scan (and 'from:<module>' with the names taken from it).
    """

    source: Source
    manifest: str | None = None
    requirements: tuple[str, ...] = ()
    optional_requirements: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    requires_python: str | None = None
    unlisted: tuple[Suggestion, ...] = ()
    unresolved: tuple[UnresolvedImport, ...] = ()
    resolved: tuple[Resolution, ...] = ()
    sys_path: tuple[str, ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    # The required imports the install provides, checked after each build (not part of the fingerprint).
    imports: tuple[ImportNeed, ...] = ()

    @property
    def fingerprint(self) -> str:
        """sha256 of exactly what decides the install: not of suggestions, warnings or other files."""
        return detection_fingerprint(
            DETECTION_FORMAT_VERSION,
            self.source,
            {
                "requirements": list(self.requirements),
                "optional": list(self.optional_requirements),
                "constraints": list(self.constraints),
                "requires_python": self.requires_python,
                "inputs": [list(pair) for pair in self.inputs],
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "manifest": self.manifest,
            "requirements": list(self.requirements),
            "optional_requirements": list(self.optional_requirements),
            "constraints": list(self.constraints),
            "requires_python": self.requires_python,
            "unlisted": [s.to_dict() for s in self.unlisted],
            "unresolved": [u.to_dict() for u in self.unresolved],
            "resolved": [r.to_dict() for r in self.resolved],
            "sys_path": list(self.sys_path),
            "warnings": list(self.warnings),
            "inputs": [list(pair) for pair in self.inputs],
            "fingerprint": self.fingerprint,
        }


def unresolved_hint(module: str, reason: str | None = None) -> str:
    why = reason or f"no known PyPI distribution provides {module!r}"
    return (
        f"{why}; nothing was installed for it. If you trust a project that provides it, add it to "
        "requirements.txt (or an inline # /// script block)"
    )


def _present(root: Path, rel: str) -> bool:
    # Any kind of entry counts, so a planted symlink is refused by read_manifest, not skipped.
    return safefs.lookup(root, rel) is not None


Answer = Resolution | Refusal


def _answers(scan: ScanResult, resolver: Resolver, *, verify: bool) -> dict[str, Answer]:
    """The resolver's answer for every dotted name the scan's imports may mean. ``verify`` lets it ask PyPI
    about the long tail; without it, only the shipped data answers."""
    names = [name for ref in scan.imports for name in ref.candidates]
    if verify:
        return resolver.resolve_all(names)
    return {n: resolver.resolve_offline(n) or Refusal(n, "") for n in names}


def _vouched(answer: Answer | None) -> Resolution | None:
    return answer if isinstance(answer, Resolution) else None


def _imports(scan: ScanResult, answers: dict[str, Answer]) -> dict[str, tuple[Answer, bool]]:
    """Shown name -> (answer, optional) for every third-party import; required wins.

    The shown name is what the script wrote, or the more specific key that resolved it
    (``from google.cloud import storage`` shows 'google.cloud.storage').
    """
    out: dict[str, tuple[Answer, bool]] = {}
    for ref in scan.imports:
        for name, res in _resolve_ref(ref, answers):
            optional = out[name][1] and ref.optional if name in out else ref.optional
            out[name] = (res, optional)
    return dict(sorted(out.items()))


def _resolve_ref(ref: ImportRef, answers: dict[str, Answer]) -> list[tuple[str, Answer]]:
    results = [(name, answers[name]) for name in ref.candidates]
    if all(isinstance(res, Refusal) for _, res in results):
        # 'from foo import a, b': one unknown 'foo', not 'foo.a', 'foo.b'
        return [(ref.module, Refusal(ref.module, results[0][1].reason if results else ""))]
    shown: list[tuple[str, Answer]] = []
    for name, res in results:
        if isinstance(res, Refusal):
            shown.append((name, res))
        else:
            shown.append((res.module if len(res.module) > len(ref.module) else ref.module, res))
    return shown


def _by_name(names: Iterable[str]) -> tuple[str, ...]:
    unique = {canonicalize_name(n): n for n in names}
    return tuple(unique[key] for key in sorted(unique))


def _declared_names(requirements: Iterable[str]) -> set[str]:
    # Requirement strings from requirements.txt may carry ' --hash=...' options after the PEP 508 part.
    return {canonicalize_name(Requirement(r.split(" --hash=")[0]).name) for r in requirements}


def _unlisted(imports: dict[str, tuple[Answer, bool]], requirements: Iterable[str]) -> tuple[Suggestion, ...]:
    declared = _declared_names(requirements)
    out = []
    for name, (res, optional) in imports.items():
        if optional:
            continue  # a guarded import left undeclared is usually deliberate
        top = canonicalize_name(name.split(".")[0])
        vouched = res if isinstance(res, Resolution) else None
        if top in declared or (vouched is not None and canonicalize_name(vouched.distribution) in declared):
            continue
        out.append(Suggestion(name, vouched.distribution if vouched is not None else None))
    return tuple(out)


def _sys_path(entry: str, src_dir: str | None, scan: ScanResult) -> tuple[str, ...]:
    entry_dir = posixpath.dirname(entry) or "."
    paths = [src_dir] if src_dir else []
    paths += [p for p in scan.local_roots if p != entry_dir]
    return tuple(dict.fromkeys(paths))


def _warnings(scan: ScanResult) -> tuple[str, ...]:
    notes = [str(error) for error in scan.errors]
    if scan.truncated:
        notes.append(f"the import scan stopped early; some local modules of {scan.entry} were not read")
    return tuple(notes)


def detect(
    root: Path,
    entry: str,
    *,
    resolver: Resolver,
    stdlib: frozenset[str] | None = None,
    allow_unknown: bool = False,
    code: bytes | None = None,
) -> PythonDetection:
    """What ``entry`` (workspace-relative) needs; raises cloche errors for refused manifests.

    ``stdlib`` is the target interpreter's ``sys.stdlib_module_names`` (default: this host's).
    ``allow_unknown`` installs unresolved scanned imports under their own top-level name.
    ``code``: the source of ``python -c CODE``, standing at ``entry`` (a name in the command's folder that is
    not read): detected like a file there.
    """
    entry = str(safefs.validate_relpath(entry))
    stdlib = host_stdlib() if stdlib is None else stdlib
    dirs = dirs_up(entry)
    src_dir: str | None = None
    for base in dirs:
        rel = posixpath.join(base, "pyproject.toml")
        if not _present(root, rel):
            continue
        project = manifests.parse_pyproject(root, rel)
        src_dir = src_dir or project.src_dir  # the nearest project's layout, even without dependencies
        if project.kind is not None:
            declared = _one_file("pyproject.toml", rel, project)
            return _advised(declared, _scan(root, entry, stdlib, src_dir, code), resolver, entry, src_dir)
    for base in dirs:
        rel = posixpath.join(base, "requirements.txt")
        if not _present(root, rel):
            continue
        reqs = manifests.parse_requirements(root, rel)
        declared = PythonDetection(
            source="requirements.txt",
            manifest=rel,
            requirements=reqs.requirements,
            constraints=reqs.constraints,
            inputs=tuple(sorted(reqs.files)),
        )
        return _advised(declared, _scan(root, entry, stdlib, src_dir, code), resolver, entry, src_dir)
    scan = _scan(root, entry, stdlib, src_dir, code)
    try:
        source = code if code is not None else safefs.read_file(root, entry, max_bytes=MAX_FILE_BYTES)
        inline = manifests.parse_inline(source, path=entry)
    except TooLarge:
        inline = None  # the scan already reported the entry as too large to read
    if inline is not None:
        return _advised(_one_file("inline", entry, inline), scan, resolver, entry, src_dir)
    answers = _answers(scan, resolver, verify=True)
    found = _from_scan(entry, src_dir, scan, _imports(scan, answers), allow_unknown)
    chosen = {canonicalize_name(r) for r in found.requirements}
    needs = import_needs(
        scan,
        lambda name: _vouched(answers.get(name)),
        resolver.data,
        chosen=True,
        covered=lambda _, res: res is not None and canonicalize_name(res.distribution) in chosen,
    )
    return dataclasses.replace(found, imports=needs)


class _OneFile(Protocol):
    """A declaration held in one file, hashed whole (a pyproject.toml) or in part (an inline block)."""

    @property
    def requirements(self) -> tuple[str, ...]: ...

    @property
    def requires_python(self) -> str | None: ...

    @property
    def sha256(self) -> str: ...


def _one_file(source: Source, manifest: str, declared: _OneFile) -> PythonDetection:
    return PythonDetection(
        source=source,
        manifest=manifest,
        requirements=declared.requirements,
        requires_python=declared.requires_python,
        inputs=((manifest, declared.sha256),),
    )


def _advised(
    declared: PythonDetection, scan: ScanResult, resolver: Resolver, entry: str, src_dir: str | None
) -> PythonDetection:
    """A detection from declared requirements, with what the scan adds to it: the imports the declaration does
    not cover (from the shipped data alone), the ones it covers (checked after each build), the search path
    and the scan's warnings. None of these is part of the fingerprint."""
    imports = _imports(scan, _answers(scan, resolver, verify=False))
    return dataclasses.replace(
        declared,
        unlisted=_unlisted(imports, declared.requirements),
        sys_path=_sys_path(entry, src_dir, scan),
        warnings=_warnings(scan),
        imports=_declared_needs(scan, resolver, declared.requirements),
    )


def _declared_needs(scan: ScanResult, resolver: Resolver, requirements: Iterable[str]) -> tuple[ImportNeed, ...]:
    """Required imports a manifest covers (the ones it does not are reported as unlisted instead)."""
    declared = _declared_names(requirements)

    def covered(module: str, res: Resolution | None) -> bool:
        top = canonicalize_name(module.split(".")[0])
        return top in declared or (res is not None and canonicalize_name(res.distribution) in declared)

    return import_needs(scan, resolver.resolve_offline, resolver.data, chosen=False, covered=covered)


def _scan(root: Path, entry: str, stdlib: frozenset[str], src_dir: str | None, code: bytes | None) -> ScanResult:
    return scan_imports(root, entry, stdlib=stdlib, extra_roots=(src_dir,) if src_dir else (), code=code)


def _from_scan(
    entry: str,
    src_dir: str | None,
    scan: ScanResult,
    imports: dict[str, tuple[Answer, bool]],
    allow_unknown: bool,
) -> PythonDetection:
    required: list[str] = []
    optional: list[str] = []
    unresolved: list[UnresolvedImport] = []
    resolved: dict[str, Resolution] = {}
    for name, (res, is_optional) in imports.items():
        if isinstance(res, Resolution):
            (optional if is_optional else required).append(res.distribution)
            resolved.setdefault(name, Resolution(name, res.distribution, res.source, res.reason))
            continue
        if is_optional:
            continue  # nothing vouches for it and nothing fails without it
        hint = unresolved_hint(name, res.reason)
        guess = name.split(".")[0]
        if allow_unknown and _DIST_NAME.fullmatch(guess):
            required.append(guess)
            hint += f"; guessed {guess!r} from the import name because unknown imports are allowed"
        unresolved.append(UnresolvedImport(name, hint))
    required_names = {canonicalize_name(n) for n in required}
    optional = [n for n in optional if canonicalize_name(n) not in required_names]
    inputs = [(f"import:{name}", "optional" if opt else "required") for name, (_, opt) in imports.items()]
    # The names taken by `from x import a, b`: a release may lack one, so they decide whether an environment serves.
    taken: dict[str, set[str]] = {}
    for ref in scan.imports:
        if ref.names and not ref.optional:
            taken.setdefault(ref.module, set()).update(ref.names)
    inputs += [(f"from:{module}", ",".join(sorted(names))) for module, names in taken.items()]
    found = bool(required or optional or unresolved)
    return PythonDetection(
        source="scan" if found else "none",
        requirements=_by_name(required),
        optional_requirements=_by_name(optional),
        unresolved=tuple(unresolved),
        resolved=tuple(resolved.values()),
        sys_path=_sys_path(entry, src_dir, scan),
        # The import set, not the files' bytes: editing code without changing its imports must not
        # trigger a re-resolve (the second exec is instant).
        inputs=tuple(sorted(inputs)),
        warnings=_warnings(scan),
    )
