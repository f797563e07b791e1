"""cloche's Maven resolver against a file:// repository of POMs (jars are placeholder bytes): inheritance,
interpolation, BOMs, nearest-wins, exclusions, scopes, ranges, and checked fetches."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cloche.ecosystems.java.detect import source_root
from cloche.ecosystems.java.ecosystem import components
from cloche.ecosystems.java.maven import Dep, Model, Repository, ResolveError, fetch, in_range, parse_pom, resolve
from cloche.ecosystems.java.run import source_root as run_source_root

NS = 'xmlns="http://maven.apache.org/POM/4.0.0"'
LEAF = "${leaf.version}"


def dep(g: str, a: str, v: str = "", extra: str = "") -> str:
    return f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>{extra}</dependency>"


def publish(repo: Path, g: str, a: str, v: str, body: str = "", parent: str = "") -> None:
    folder = repo / g.replace(".", "/") / a / v
    folder.mkdir(parents=True, exist_ok=True)
    coordinates = f"<groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
    (folder / f"{a}-{v}.pom").write_text(f"<project {NS}>{parent}{coordinates}{body}</project>")
    (folder / f"{a}-{v}.jar").write_bytes(f"jar {g}:{a}:{v}".encode())


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    root = tmp_path / "repo"
    publish(root, "g", "leaf", "1.0")
    publish(root, "g", "leaf", "2.0")
    publish(root, "g", "opt", "1.0")
    publish(root, "g", "tst", "1.0")
    publish(root, "g", "unwanted", "1.0")
    managed = f"<dependencyManagement><dependencies>{dep('g', 'leaf', LEAF)}</dependencies>"
    managed += "</dependencyManagement>"
    publish(
        root,
        "g",
        "parent",
        "1",
        f"<packaging>pom</packaging><properties><leaf.version>2.0</leaf.version></properties>{managed}",
    )
    bom = f"<dependencyManagement><dependencies>{dep('g', 'opt', '1.0')}</dependencies></dependencyManagement>"
    publish(root, "g", "bom", "1", bom)
    mid_deps = dep("g", "leaf") + dep("g", "opt", "1.0", "<optional>true</optional>")
    mid_deps += dep("g", "tst", "1.0", "<scope>test</scope>") + dep("g", "unwanted", "1.0")
    licenses = "<licenses><license><name>MIT License</name></license></licenses>"
    parent = "<parent><groupId>g</groupId><artifactId>parent</artifactId><version>1</version></parent>"
    publish(root, "g", "mid", "3.0", f"{licenses}<dependencies>{mid_deps}</dependencies>", parent)
    publish(root, "g", "near", "1.0", f"<dependencies>{dep('g', 'leaf', '1.0')}</dependencies>")
    meta = root / "g" / "leaf" / "maven-metadata.xml"
    meta.write_text(
        "<metadata><versioning><versions><version>1.0</version><version>2.0</version></versions></versioning></metadata>"
    )
    return Repository([f"file://{root}"], str(tmp_path / "cache"))


def test_parse_pom_and_ranges() -> None:
    model = parse_pom(
        f"<project {NS}><groupId>a</groupId><artifactId>b</artifactId><version>1</version>"
        "<properties><x>1.5</x></properties><dependencies>"
        + dep("c", "d", "${x}", "<scope>provided</scope>")
        + "</dependencies><build><plugins><plugin><configuration><archive><manifest><mainClass>a.Main</mainClass>"
        "</manifest></archive></configuration></plugin></plugins></build></project>"
    )
    assert (model.group, model.artifact, model.version, model.main_class) == ("a", "b", "1", "a.Main")
    assert model.properties == {"x": "1.5"} and model.dependencies[0].scope == "provided"
    assert in_range("1.5", "[1.0,2.0)") and not in_range("2.0", "[1.0,2.0)") and in_range("2.0", "[1.0,2.0]")
    assert in_range("1.2", "[1.2]") and in_range("0.1", "(,1.0]") and in_range("3.5", "[1,2),[3,4)")
    assert not in_range("10.0", "[1.0,9.0)")  # numeric, not lexical, comparison
    with pytest.raises(ResolveError):
        parse_pom("<project>")


def test_nearest_wins_inheritance_scopes_and_exclusions(repo: Repository) -> None:
    excluded = Dep("g", "mid", "3.0", exclusions=frozenset({("g", "unwanted")}))
    found = resolve(repo, Model(), [Dep("g", "near", "1.0"), excluded])
    assert [(a["artifact"], a["version"]) for a in found] == [("near", "1.0"), ("mid", "3.0"), ("leaf", "1.0")]
    # Without near, mid's parent-managed ${leaf.version} = 2.0 applies; optional and test deps never come.
    alone = resolve(repo, Model(), [Dep("g", "mid", "3.0")])
    assert [(a["artifact"], a["version"]) for a in alone] == [("mid", "3.0"), ("leaf", "2.0"), ("unwanted", "1.0")]
    assert alone[0]["license"] == "MIT License"
    assert alone[0]["sha256"] == hashlib.sha256(b"jar g:mid:3.0").hexdigest()


def test_root_management_bom_import_and_ranges(repo: Repository) -> None:
    root = repo.effective(
        parse_pom(
            f"<project {NS}><groupId>r</groupId><artifactId>r</artifactId><version>1</version>"
            "<dependencyManagement><dependencies>"
            + dep("g", "leaf", "1.0")
            + dep("g", "bom", "1", "<type>pom</type><scope>import</scope>")
            + "</dependencies></dependencyManagement><dependencies>"
            + dep("g", "mid", "3.0")
            + dep("g", "opt")
            + "</dependencies></project>"
        )
    )
    found = {a["artifact"]: a["version"] for a in resolve(repo, root, list(root.dependencies))}
    assert found == {"mid": "3.0", "opt": "1.0", "leaf": "1.0", "unwanted": "1.0"}  # the root pins leaf
    assert resolve(repo, Model(), [Dep("g", "leaf", "[1.0,3.0)")])[0]["version"] == "2.0"
    with pytest.raises(ResolveError, match="g:nothere:1"):
        resolve(repo, Model(), [Dep("g", "nothere", "1")])


def test_fetch_checks_hashes(repo: Repository, tmp_path: Path) -> None:
    lock = resolve(repo, Model(), [Dep("g", "near", "1.0")])
    dest = tmp_path / "env"
    paths = fetch(repo, lock, str(dest))
    assert (dest / "classpath.txt").read_text().splitlines() == paths
    assert [c.purl for c in components(json.dumps({"artifacts": lock}), "pom.xml")] == [
        "pkg:maven/g/near@1.0",
        "pkg:maven/g/leaf@1.0",
    ]
    lock[0]["sha256"] = "0" * 64
    with pytest.raises(ResolveError, match="sha256"):
        fetch(repo, lock, str(dest))


def test_source_roots() -> None:
    assert source_root("src/main/java/com/acme/App.java", "package com.acme;\n") == "src/main/java"
    assert source_root("com/acme/App.java", "// package x;\npackage com.acme;") == ""
    assert source_root("odd/App.java", "package com.acme;") == "odd"
    assert source_root("App.java", "class App {}") == ""
    assert run_source_root("src/com/acme", "com.acme") == "src" and run_source_root("x", "") == "x"
