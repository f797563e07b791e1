"""A file-based Maven repository fixture: tiny jars built with the host's javac and jar, laid out as
``group/artifact/version/artifact-version.{jar,pom}`` (Maven Central is not reachable from here)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

APACHE = "<licenses><license><name>Apache License, Version 2.0</name>"
APACHE += "<url>https://www.apache.org/licenses/LICENSE-2.0.txt</url></license></licenses>"


def pom(group: str, artifact: str, version: str, body: str = "", parent: tuple[str, str, str] | None = None) -> str:
    head = ""
    if parent is not None:
        head = f"<parent><groupId>{parent[0]}</groupId><artifactId>{parent[1]}</artifactId>"
        head += f"<version>{parent[2]}</version></parent>"
    return (
        '<?xml version="1.0"?>\n<project xmlns="http://maven.apache.org/POM/4.0.0">'
        f"<modelVersion>4.0.0</modelVersion>{head}<groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version>{body}</project>\n"
    )


def dependency(group: str, artifact: str, version: str = "", extra: str = "") -> str:
    v = f"<version>{version}</version>" if version else ""
    return f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>{v}{extra}</dependency>"


def publish(repo: Path, group: str, artifact: str, version: str, pom_text: str, sources: dict[str, str]) -> None:
    """Compile ``sources`` (path -> Java source) into a jar and publish it with ``pom_text``."""
    folder = repo / group.replace(".", "/") / artifact / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{artifact}-{version}.pom").write_text(pom_text)
    if not sources:
        return
    with tempfile.TemporaryDirectory() as tmp:
        src, classes = Path(tmp, "src"), Path(tmp, "classes")
        for rel, text in sources.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        classpath = [str(p) for p in repo.rglob("*.jar")]
        cmd = ["javac", "-d", str(classes), *(["-cp", ":".join(classpath)] if classpath else [])]
        subprocess.run([*cmd, *(str(src / rel) for rel in sources)], check=True)
        subprocess.run(["jar", "cf", str(folder / f"{artifact}-{version}.jar"), "-C", str(classes), "."], check=True)


def standard_repository(repo: Path) -> Path:
    """com.example:greeter:1.0 -> (parent-managed version) com.example:shouter:2.1; test/optional deps ignored."""
    publish(
        repo,
        "com.example",
        "shouter",
        "2.1",
        pom(
            "com.example",
            "shouter",
            "2.1",
            "<dependencies>"
            + dependency("junit", "junit", "4.13", "<scope>test</scope>")
            + dependency("com.example", "absent", "1", "<optional>true</optional>")
            + "</dependencies>",
        ),
        {
            "com/example/shouter/Shouter.java": "package com.example.shouter;\n"
            "public class Shouter { public static String loud(String s) { return s.toUpperCase(); } }\n"
        },
    )
    managed = "<dependencyManagement><dependencies>" + dependency("com.example", "shouter", "${shouter.version}")
    managed += "</dependencies></dependencyManagement>"
    parent_body = f"<packaging>pom</packaging><properties><shouter.version>2.1</shouter.version></properties>{managed}"
    publish(repo, "com.example", "parent", "1", pom("com.example", "parent", "1", parent_body), {})
    body = f"{APACHE}<dependencies>{dependency('com.example', 'shouter')}</dependencies>"
    publish(
        repo,
        "com.example",
        "greeter",
        "1.0",
        pom("com.example", "greeter", "1.0", body, parent=("com.example", "parent", "1")),
        {
            "com/example/greeter/Greeter.java": "package com.example.greeter;\nimport com.example.shouter.Shouter;\n"
            'public class Greeter { public static String hello(String n) { return "hello " + Shouter.loud(n); } }\n'
        },
    )
    return repo
