"""Java through the whole service: a file-based Maven repository stands in for Maven Central (not reachable
here); cloche's resolver, the install jail, javac and java in the exec jail are real."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cloche import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "java"))
from _mavenrepo import dependency, pom, standard_repository

from tests_support import run_file

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK on this host")

MAIN = "import util.Helper;\n\npublic class Main {\n  public static void main(String[] a) {\n"
MAIN += '    System.out.println("twice " + Helper.twice(21));\n  }\n}\n'
HELPER = "package util;\n\npublic class Helper {\n  public static int twice(int x) { return x * 2; }\n}\n"
GREET = "import com.example.greeter.Greeter;\n\npublic class App {\n  public static void main(String[] a) {\n"
GREET += '    System.out.println(Greeter.hello("java"));\n  }\n}\n'


def registry_env(root: Path) -> dict[str, str]:
    """The Maven repository for ``registry_server`` (conftest)."""
    return {"CLOCHE_MAVEN_REPOSITORY": f"file://{standard_repository(root / 'maven')}"}


def test_multi_file_without_manifest_reruns_without_recompiling(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("Main.java", MAIN)
        box.write("util/Helper.java", HELPER)
        first = box.exec(filename="Main.java", timeout_seconds=120)
        assert first.status == "succeeded", first.output
        assert first.output == "twice 42\n"
        assert first.install is not None and first.install.source == "none" and first.install.installed == []
        stamp = "stat -c %Y.%i .cloche/java/Main.java/stamp .cloche/java/Main.java/classes/util/Helper.class"
        before = box.exec(command=stamp).stdout
        second = box.exec(filename="Main.java", timeout_seconds=120)
        assert second.output == "twice 42\n"
        assert box.exec(command=stamp).stdout == before  # javac did not run
        box.write("util/Helper.java", HELPER.replace("x * 2", "x * 3"))
        assert box.exec(filename="Main.java", timeout_seconds=120).output == "twice 63\n"


def test_packaged_entry_and_compile_error(cloche: Client) -> None:
    with cloche.create() as box:
        box.write(
            "src/app/Main.java", "package app;\n\n" + MAIN.replace("import util.Helper;\n", "import app.util.Helper;\n")
        )
        box.write("src/app/util/Helper.java", HELPER.replace("package util;", "package app.util;"))
        result = box.exec(filename="src/app/Main.java", timeout_seconds=120)
        assert result.status == "succeeded", result.output
        assert result.output == "twice 42\n"
        source = 'public class Broken { void f() { int x = "s"; } }\n'
        broken = run_file(box, "Broken.java", source, status="failed", timeout_seconds=120)
        assert "incompatible types" in broken.stderr


def test_deps_comments_resolve_transitively_with_inventory(cloche: Client) -> None:
    with cloche.create() as box:
        first = run_file(box, "App.java", "//DEPS com.example:greeter:1.0\n" + GREET, timeout_seconds=300)
        assert first.stdout == "hello JAVA\n"
        assert first.install is not None and first.install.source == "deps-comments"
        assert first.output.startswith(
            "Installing com.example:greeter==1.0...\nInstalling com.example:shouter==2.1...\n"
        )
        sbom = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{first.run_id}/sbom").json()
        found = {c["purl"]: c for c in sbom["components"]}
        assert set(found) == {"pkg:maven/com.example/greeter@1.0", "pkg:maven/com.example/shouter@2.1"}
        assert found["pkg:maven/com.example/greeter@1.0"]["licenses"][0]["license"]["id"] == "Apache-2.0"
        second = box.exec(filename="App.java", timeout_seconds=120)
        assert second.output == "hello JAVA\n"
        assert second.install is not None and second.install.reused_environment and second.install.duration_ms < 1000


def test_pom_dependency_with_properties_and_resources(cloche: Client) -> None:
    declared = dependency("com.example", "greeter", "${greeter.version}")
    body = f"<properties><greeter.version>1.0</greeter.version></properties><dependencies>{declared}</dependencies>"
    app = GREET.replace(
        'System.out.println(Greeter.hello("java"));',
        'System.out.println(Greeter.hello("java"));\n'
        '    try (var in = App.class.getResourceAsStream("/greeting.txt")) {\n'
        "      System.out.print(new String(in.readAllBytes()));\n"
        "    } catch (Exception e) { throw new RuntimeException(e); }",
    )
    with cloche.create() as box:
        box.write("pom.xml", pom("com.acme", "app", "0.1", body))
        box.write("src/main/java/com/acme/App.java", "package com.acme;\n\n" + app)
        box.write("src/main/resources/greeting.txt", "from resources\n")
        result = box.exec(filename="src/main/java/com/acme/App.java", timeout_seconds=300)
        assert result.status == "succeeded", result.output
        assert result.stdout == "hello JAVA\nfrom resources\n"
        assert result.install is not None and result.install.source == "pom.xml"
        assert result.install.requested == ["com.example:greeter:1.0"]


def test_gradle_fallback_resolves_declared_coordinates(cloche: Client) -> None:
    gradle = "plugins { id 'java' }\n\ndependencies {\n    implementation 'com.example:greeter:1.0'\n"
    gradle += "    testImplementation 'junit:junit:4.13'\n}\n"
    with cloche.create() as box:
        box.write("build.gradle", gradle)
        result = run_file(box, "src/main/java/App.java", GREET, timeout_seconds=300)
        assert result.stdout == "hello JAVA\n"
        assert result.install is not None and result.install.source == "build.gradle"


def test_unresolved_unlisted_and_install_failure(cloche: Client) -> None:
    with cloche.create() as box:
        box.write(
            "Main.java",
            "import com.google.gson.Gson;\n\npublic class Main { public static void main(String[] a) {} }\n",
        )
        bare = box.exec(filename="Main.java", timeout_seconds=120)
        assert bare.status == "failed"
        assert [u.module for u in bare.unresolved_imports] == ["com.google.gson"]
        assert "//DEPS" in (bare.unresolved_imports[0].hint or "")
        box.write(
            "Main.java", "//DEPS com.example:greeter:1.0\nimport org.other.Thing;\n" + GREET.replace("App", "Main")
        )
        unlisted = box.exec(filename="Main.java", timeout_seconds=300)
        assert [(u.module, u.suggested) for u in unlisted.unlisted_imports] == [("org.other", None)]
        failed = run_file(
            box,
            "Main.java",
            "//DEPS com.example:nothere:9.9\n" + GREET.replace("App", "Main"),
            status="install_failed",
            timeout_seconds=300,
        )
        assert "com.example:nothere:9.9" in failed.output
