"""What a Java entry needs, decided from the workspace alone.

The nearest manifest above the entry decides (at one level, pom.xml before build.gradle(.kts)):

- ``pom.xml``: resolved as the root POM (parents, properties, dependencyManagement, BOMs) in the install
  jail; its ``mainClass`` (exec or jar plugin) is used when the entry file has no ``main`` method.
- ``build.gradle`` / ``build.gradle.kts``: Gradle is not run (it is not on this host, and build scripts
  are programs); the ``implementation``/``api``/``runtimeOnly``/``compileOnly`` coordinates written as
  ``'group:artifact:version'`` or ``group: ..., name: ..., version: ...`` are resolved by the same Maven
  resolver and compiled with javac.
- Neither: JBang-style ``//DEPS group:artifact:version`` comments in the entry file.

Imports are scanned in every ``.java`` file under the entry's source root. Packages that are neither the
JDK's nor the workspace's own are ``unresolved`` when nothing is declared, and ``unlisted`` when no
declared coordinate plausibly provides them (same organisation: the first two name segments). Java
package names do not say which artifact ships them, so nothing is guessed or installed from an import.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloche.ecosystems.common import (
    MAX_SOURCE_BYTES,
    detection_fingerprint,
    dirs_up,
    join,
    present,
    read_text,
    shown_fields,
    strip_comments,
)
from cloche.ecosystems.common import source_files as list_sources
from cloche.ecosystems.java.maven import ResolveError, interpolate, parse_pom
from cloche.errors import ClocheError, InvalidRequest
from cloche.store import safefs

DETECTION_FORMAT_VERSION = 1
MANIFESTS = ("pom.xml", "build.gradle", "build.gradle.kts")
JDK_PREFIXES = ("java.", "javax.", "jdk.", "sun.", "com.sun.", "org.w3c.dom", "org.xml.sax", "org.ietf.jgss")
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)
_IMPORT = re.compile(r"^\s*import\s+(?:static\s+)?([\w.]+)(?:\.\*)?\s*;", re.MULTILINE)
_DEPS = re.compile(r"^\s*//DEPS\s+(.+)$", re.MULTILINE)
_COORD = re.compile(r"^[\w.\-]+:[\w.\-]+:[\w.\-\[\](),]+$")
_GRADLE_CONFIGS = r"(?<![\w.])(?:implementation|api|runtimeOnly|compileOnly|compile|runtime)"
_GRADLE_STRING = re.compile(_GRADLE_CONFIGS + r"\s*\(?\s*['\"]([^'\"$]+:[^'\"$]+:[^'\"$]+)['\"]")
_GRADLE_NAMED = re.compile(
    _GRADLE_CONFIGS + r"\s*\(?\s*group\s*[:=]\s*['\"]([^'\"]+)['\"]\s*,\s*name\s*[:=]\s*['\"]([^'\"]+)['\"]"
    r"\s*,\s*version\s*[:=]\s*['\"]([^'\"]+)['\"]"
)


@dataclass(frozen=True)
class JavaDetection:
    source: str  # "pom.xml", "build.gradle", "build.gradle.kts", "deps-comments" or "none"
    manifest: str | None = None
    pom: str | None = None  # pom.xml text, resolved as the root model
    coordinates: tuple[str, ...] = ()  # group:artifact:version (gradle, //DEPS)
    requested: tuple[str, ...] = ()
    main_class: str | None = None
    resources: tuple[str, ...] = ()  # workspace folders put on the classpath (src/main/resources)
    unlisted: tuple[dict[str, str | None], ...] = ()
    unresolved: tuple[dict[str, str | None], ...] = ()

    @property
    def fingerprint(self) -> str:
        inputs = {"pom": self.pom, "coordinates": list(self.coordinates)}
        return detection_fingerprint(DETECTION_FORMAT_VERSION, self.source, inputs)

    def request(self) -> dict[str, Any]:
        """What the in-jail resolver reads."""
        deps = [dict(zip(("group", "artifact", "version"), c.split(":", 2), strict=True)) for c in self.coordinates]
        return {"pom": self.pom, "dependencies": deps}

    def to_dict(self) -> dict[str, Any]:
        names = ("source", "manifest", "requested", "main_class", "resources", "unlisted", "unresolved")
        return shown_fields(self, names)


def is_jdk(package: str) -> bool:
    return package.startswith(JDK_PREFIXES)


def source_root(entry: str, text: str) -> str:
    """The folder the entry's package path starts from (its own folder for the default package)."""
    found = _PACKAGE.search(strip_comments(text))
    folder = posixpath.dirname(entry)
    if found is None:
        return folder
    suffix = found.group(1).replace(".", "/")
    if folder == suffix:
        return ""
    return folder.removesuffix("/" + suffix) if folder.endswith("/" + suffix) else folder


def _scan(root: Path, base: str) -> tuple[set[str], set[str]]:
    """(imported packages, packages the workspace declares) over the .java files below ``base``."""
    imported: set[str] = set()
    declared: set[str] = set()
    for rel in list_sources(root, base, ".java"):
        try:
            code = strip_comments(safefs.read_file(root, rel, max_bytes=MAX_SOURCE_BYTES).decode("utf-8", "replace"))
        except (ClocheError, OSError):
            continue
        declared.update(m.group(1) for m in _PACKAGE.finditer(code))
        for m in _IMPORT.finditer(code):
            name = m.group(1)
            parts = name.split(".")
            # 'import a.b.C;' names class C of package a.b; 'import a.b.*;' (the regex drops '.*') is a.b.
            package = ".".join(parts[:-1]) if parts[-1][:1].isupper() else name
            while package and package.split(".")[-1][:1].isupper():  # nested classes: a.b.Outer.Inner
                package = package.rpartition(".")[0]
            imported.add(package or name)
    return imported, declared


# Name segments too common to tie a package to an artifact.
_GENERIC = frozenset({"com", "org", "net", "io", "info", "de", "fr", "uk", "co", "me", "dev", "app", "java", "javax"})


def _tokens(group: str, artifact: str) -> set[str]:
    return {t for t in re.split(r"[.\-_]", f"{group}.{artifact}") if t and t not in _GENERIC}


def _provided(package: str, declared: list[tuple[str, str]]) -> bool:
    """Plausibly provided by a declared artifact: same organisation (first two segments), or a distinctive
    segment shared with a group or artifact id (``okhttp3`` from com.squareup.okhttp3:okhttp)."""
    org = ".".join(package.split(".")[:2])
    segments = set(package.split(".")) - _GENERIC
    return any(".".join(g.split(".")[:2]) == org or segments & _tokens(g, a) for g, a in declared)


def _gradle(text: str) -> list[str]:
    code = strip_comments(text)
    coords = [m.group(1) for m in _GRADLE_STRING.finditer(code)]
    coords += [f"{g}:{a}:{v}" for g, a, v in _GRADLE_NAMED.findall(code)]
    return [c for c in coords if _COORD.match(c) and c.count(":") == 2]


def _deps_comments(text: str, where: str) -> list[str]:
    coords = []
    for line in _DEPS.findall(text):
        for item in re.split(r"[\s,]+", line.strip()):
            if not item:
                continue
            if item.count(":") < 2 or not _COORD.match(":".join(item.split(":")[:3])):
                raise InvalidRequest(f"{where}: //DEPS {item!r} is not group:artifact:version")
            coords.append(":".join(item.split(":")[:3]))
    return coords


def detect(root: Path, entry: str) -> JavaDetection:
    entry = str(safefs.validate_relpath(entry))
    entry_text = read_text(root, entry, MAX_SOURCE_BYTES)
    base = source_root(entry, entry_text)
    imported, declared = _scan(root, base)
    third = sorted(p for p in imported if not is_jdk(p) and p not in declared)
    manifest = next(((d, n) for d in dirs_up(entry) for n in MANIFESTS if present(root, join(d, n))), None)
    fields: dict[str, Any] = {}
    artifacts: list[tuple[str, str]] = []
    if manifest is not None:
        folder, name = manifest
        where = join(folder, name)
        text = read_text(root, where)
        resources = join(folder, "src/main/resources")
        fields["resources"] = (resources,) if present(root, resources) else ()
        fields["manifest"] = where
        if name == "pom.xml":
            try:
                model = parse_pom(text)
            except ResolveError as e:
                raise InvalidRequest(f"{where}: {e}") from e
            props = {**model.properties, "project.version": model.version, "project.groupId": model.group}
            coords = [f"{d.group}:{d.artifact}:{interpolate(d.version, props)}" for d in model.dependencies]
            coords = [c for c, d in zip(coords, model.dependencies, strict=True) if d.scope != "test"]
            fields.update(source="pom.xml", pom=text, requested=tuple(coords), main_class=model.main_class)
            artifacts = [(d.group, d.artifact) for d in model.dependencies]
        else:
            coords = _gradle(text)
            fields.update(source=name, coordinates=tuple(coords), requested=tuple(coords))
            artifacts = [(c.split(":")[0], c.split(":")[1]) for c in coords]
    else:
        coords = _deps_comments(entry_text, entry)
        fields.update(source="deps-comments" if coords else "none", coordinates=tuple(coords), requested=tuple(coords))
        artifacts = [(c.split(":")[0], c.split(":")[1]) for c in coords]
    if manifest is None and not artifacts:
        hint = "declare it with a //DEPS group:artifact:version comment, a pom.xml or a build.gradle"
        fields["unresolved"] = tuple({"module": p, "hint": hint} for p in third)
    else:
        missing = [p for p in third if not _provided(p, artifacts)]
        fields["unlisted"] = tuple({"module": p, "suggested": None} for p in missing)
    return JavaDetection(**fields)
