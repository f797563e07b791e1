"""A small Maven dependency resolver, run *inside the install jail* (``python3 -I maven.py resolve|fetch``).

Why not Maven itself: ``mvn dependency:*`` needs Maven's plugins, which Maven downloads from the same
repository at first use; offline hosts (and the tests) would need them pre-installed. Resolution itself is
well defined and small, so cloche does it here and runs no third-party code while doing it:

- POMs are read with their parent chain (properties, dependencyManagement and dependencies inherited),
  ``${...}`` placeholders interpolated, and ``import``-scoped BOMs merged into dependencyManagement.
- The graph is walked breadth first; the nearest declaration of a group:artifact wins (Maven's "nearest
  wins"), the root's dependencyManagement pins transitive versions, exclusions apply below the
  dependency that declares them, optional and test/provided/system dependencies of dependencies are
  skipped. Root ``provided`` dependencies are kept: in a sandbox nothing else provides them.
- Version ranges (``[1.0,2.0)``) pick the highest listed version in ``maven-metadata.xml``.

``resolve`` reads ``{"pom": text|null, "dependencies": [{"group", "artifact", "version", "scope"}...]}``
on stdin and prints the lock: every artifact with its version, sha256 and declared license. ``fetch``
reads a lock and copies each jar, checked against its sha256, into ``--dest/lib``, writing
``classpath.txt``. Both keep downloads in ``--cache`` (a local-repository layout). Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any

SKIPPED_TRANSITIVE_SCOPES = {"test", "provided", "system", "import"}
_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


class ResolveError(Exception):
    pass


@dataclass
class Dep:
    group: str
    artifact: str
    version: str = ""
    scope: str = "compile"
    type: str = "jar"
    classifier: str = ""
    optional: bool = False
    exclusions: frozenset[tuple[str, str]] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.artifact)


@dataclass
class Model:
    group: str = ""
    artifact: str = ""
    version: str = ""
    parent: tuple[str, str, str] | None = None
    properties: dict[str, str] = field(default_factory=dict)
    dependencies: list[Dep] = field(default_factory=list)
    managed: list[Dep] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    main_class: str | None = None


def _strip(root: ET.Element) -> ET.Element:
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def _text(element: ET.Element | None, path: str) -> str:
    found = element.find(path) if element is not None else None
    return (found.text or "").strip() if found is not None and found.text else ""


def _deps(element: ET.Element | None) -> list[Dep]:
    out = []
    for d in element.findall("dependency") if element is not None else []:
        exclusions = frozenset((_text(e, "groupId"), _text(e, "artifactId")) for e in d.findall("exclusions/exclusion"))
        out.append(
            Dep(
                group=_text(d, "groupId"),
                artifact=_text(d, "artifactId"),
                version=_text(d, "version"),
                scope=_text(d, "scope") or "compile",
                type=_text(d, "type") or "jar",
                classifier=_text(d, "classifier"),
                optional=_text(d, "optional") == "true",
                exclusions=exclusions,
            )
        )
    return out


def parse_pom(text: str | bytes) -> Model:
    """One POM as written (no inheritance, no interpolation)."""
    try:
        root = _strip(ET.fromstring(text))
    except ET.ParseError as e:
        raise ResolveError(f"not a valid POM: {e}") from e
    parent = root.find("parent")
    model = Model(
        group=_text(root, "groupId") or _text(parent, "groupId"),
        artifact=_text(root, "artifactId"),
        version=_text(root, "version") or _text(parent, "version"),
        parent=(_text(parent, "groupId"), _text(parent, "artifactId"), _text(parent, "version"))
        if parent is not None
        else None,
        properties={child.tag: (child.text or "").strip() for child in root.find("properties") or []},
        dependencies=_deps(root.find("dependencies")),
        managed=_deps(root.find("dependencyManagement/dependencies")),
        licenses=[_text(lic, "name") for lic in root.findall("licenses/license") if _text(lic, "name")],
    )
    for plugin in root.findall("build/plugins/plugin"):
        main = _text(plugin, "configuration/mainClass") or _text(plugin, "configuration/archive/manifest/mainClass")
        model.main_class = model.main_class or main or None
    return model


def interpolate(value: str, props: dict[str, str]) -> str:
    for _ in range(10):  # properties may refer to properties; bounded against cycles
        new = _PLACEHOLDER.sub(lambda m: props.get(m.group(1), m.group(0)), value)
        if new == value:
            break
        value = new
    return value


def _version_key(version: str) -> list[tuple[int, int | str]]:
    parts = re.split(r"[.\-]", version)
    return [(0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts]


def in_range(version: str, spec: str) -> bool:
    """Maven range syntax: ``[1.0,2.0)``, ``(,1.5]``, ``[1.2]``, and unions like ``[1,2),[3,4)``."""
    key = _version_key(version)
    for low_b, body, high_b in re.findall(r"([\[(])([^\[\]()]*)([\])])", spec):
        if "," not in body:
            if version == body.strip():
                return True
            continue
        low, high = (part.strip() for part in body.split(",", 1))
        ok_low = not low or key > _version_key(low) or (low_b == "[" and key == _version_key(low))
        ok_high = not high or key < _version_key(high) or (high_b == "]" and key == _version_key(high))
        if ok_low and ok_high:
            return True
    return False


class Repository:
    def __init__(self, urls: list[str], cache: str) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.cache = cache
        self.models: dict[tuple[str, str, str], Model] = {}

    def get(self, rel: str) -> bytes:
        cached = os.path.join(self.cache, rel)
        if os.path.isfile(cached):
            with open(cached, "rb") as handle:
                return handle.read()
        errors = []
        for url in self.urls:
            try:
                with urllib.request.urlopen(f"{url}/{rel}", timeout=60) as response:
                    data: bytes = response.read()
            except (urllib.error.URLError, OSError) as e:
                errors.append(f"{url}/{rel}: {getattr(e, 'reason', e)}")
                continue
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            temp = f"{cached}.part-{os.getpid()}"
            with open(temp, "wb") as handle:
                handle.write(data)
            os.replace(temp, cached)
            return data
        raise ResolveError("; ".join(errors) or f"no repository for {rel}")

    @staticmethod
    def path(group: str, artifact: str, version: str, ext: str, classifier: str = "") -> str:
        tail = f"-{classifier}" if classifier else ""
        return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}{tail}.{ext}"

    def pick(self, group: str, artifact: str, spec: str) -> str:
        if not spec or spec[0] not in "[(":
            return spec
        meta = _strip(ET.fromstring(self.get(f"{group.replace('.', '/')}/{artifact}/maven-metadata.xml")))
        versions = [v.text.strip() for v in meta.findall("versioning/versions/version") if v.text]
        matching = sorted((v for v in versions if in_range(v, spec)), key=_version_key)
        if not matching:
            raise ResolveError(f"no version of {group}:{artifact} matches {spec}")
        return matching[-1]

    def model(self, group: str, artifact: str, version: str) -> Model:
        key = (group, artifact, version)
        if key not in self.models:
            try:
                text = self.get(self.path(group, artifact, version, "pom"))
            except ResolveError as e:
                raise ResolveError(f"cannot find {group}:{artifact}:{version}: {e}") from e
            self.models[key] = self.effective(parse_pom(text))
        return self.models[key]

    def effective(self, model: Model) -> Model:
        """``model`` with its parents merged in, placeholders interpolated and BOMs imported."""
        props: dict[str, str] = {}
        managed: dict[tuple[str, str, str, str], Dep] = {}
        deps = list(model.dependencies)
        if model.parent is not None and all(model.parent):
            parent = self.model(*model.parent)
            props.update(parent.properties)
            managed.update({(d.group, d.artifact, d.type, d.classifier): d for d in parent.managed})
            deps = [*parent.dependencies, *deps]
            model.licenses = model.licenses or parent.licenses
        props.update(model.properties)
        props.update(
            {
                "project.groupId": model.group,
                "project.artifactId": model.artifact,
                "project.version": model.version,
                "pom.version": model.version,
                "version": model.version,
            }
        )
        if model.parent:
            props.update({"project.parent.version": model.parent[2], "project.parent.groupId": model.parent[0]})

        def fill(d: Dep) -> Dep:
            return Dep(
                interpolate(d.group, props),
                interpolate(d.artifact, props),
                interpolate(d.version, props),
                d.scope,
                d.type,
                interpolate(d.classifier, props),
                d.optional,
                d.exclusions,
            )

        for d in map(fill, model.managed):
            if d.scope == "import" and d.type == "pom":
                bom = self.model(d.group, d.artifact, self.pick(d.group, d.artifact, d.version))
                for m in bom.managed:
                    managed.setdefault((m.group, m.artifact, m.type, m.classifier), m)
            else:
                managed[(d.group, d.artifact, d.type, d.classifier)] = d
        return Model(
            group=model.group,
            artifact=model.artifact,
            version=interpolate(model.version, props),
            parent=model.parent,
            properties=props,
            dependencies=[fill(d) for d in deps],
            managed=list(managed.values()),
            licenses=model.licenses,
            main_class=model.main_class,
        )


def _managed(model: Model) -> dict[tuple[str, str], Dep]:
    return {d.key: d for d in model.managed}


def resolve(repo: Repository, root: Model, direct: list[Dep]) -> list[dict[str, Any]]:
    """Artifacts to put on the classpath, nearest first."""
    pins = _managed(root)
    queue: deque[tuple[Dep, frozenset[tuple[str, str]], int]] = deque((d, d.exclusions, 0) for d in direct)
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    while queue:
        dep, excluded, depth = queue.popleft()
        if dep.key in chosen or dep.key in excluded or (dep.group, "*") in excluded:
            continue
        if depth and (dep.optional or dep.scope in SKIPPED_TRANSITIVE_SCOPES):
            continue
        if not depth and dep.scope in {"test", "system", "import"}:
            continue
        pinned = pins.get(dep.key)
        spec = (pinned.version if pinned and (depth or not dep.version) else "") or dep.version
        if not spec:
            raise ResolveError(f"{dep.group}:{dep.artifact} has no version (and no dependencyManagement entry)")
        version = repo.pick(dep.group, dep.artifact, spec)
        model = repo.model(dep.group, dep.artifact, version)
        entry: dict[str, Any] = {"group": dep.group, "artifact": dep.artifact, "version": version}
        entry["license"] = " OR ".join(model.licenses) or None
        if dep.type in ("jar", "bundle", "maven-plugin", ""):
            rel = Repository.path(dep.group, dep.artifact, version, "jar", dep.classifier)
            entry.update(classifier=dep.classifier, file=rel, sha256=hashlib.sha256(repo.get(rel)).hexdigest())
        chosen[dep.key] = entry
        own = _managed(model)
        for child in model.dependencies:
            if child.key in chosen:
                continue
            if not child.version and child.key in own:
                child.version = own[child.key].version
            queue.append((child, excluded | dep.exclusions | child.exclusions, depth + 1))
    return list(chosen.values())


def fetch(repo: Repository, lock: list[dict[str, Any]], dest: str) -> list[str]:
    lib = os.path.join(dest, "lib")
    os.makedirs(lib, exist_ok=True)
    paths = []
    for entry in lock:
        if "file" not in entry:
            continue
        data = repo.get(entry["file"])
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ResolveError(
                f"{entry['group']}:{entry['artifact']}:{entry['version']}: sha256 does not match the lock"
            )
        name = f"{entry['group']}_{os.path.basename(entry['file'])}"
        with open(os.path.join(lib, name), "wb") as handle:
            handle.write(data)
        paths.append(f"{dest}/lib/{name}")
    with open(os.path.join(dest, "classpath.txt"), "w", encoding="utf-8") as handle:
        handle.write("".join(f"{p}\n" for p in paths))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cloche's Maven resolver")
    parser.add_argument("command", choices=["resolve", "fetch"])
    parser.add_argument("--repo", action="append", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--dest")
    args = parser.parse_args(argv)
    repo = Repository(args.repo, args.cache)
    request = json.load(sys.stdin)
    try:
        if args.command == "fetch":
            fetch(repo, request["artifacts"], args.dest)
            return 0
        root = repo.effective(parse_pom(request["pom"])) if request.get("pom") else Model()
        direct = list(root.dependencies) if request.get("pom") else []
        direct += [
            Dep(d["group"], d["artifact"], d.get("version", ""), d.get("scope", "compile"))
            for d in request["dependencies"]
        ]
        json.dump({"artifacts": resolve(repo, root, direct)}, sys.stdout, indent=1, sort_keys=True)
    except (ResolveError, ET.ParseError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
