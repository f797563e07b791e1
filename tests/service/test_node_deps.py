"""Node dependencies through the whole service: detect, lock with npm, `npm ci` once in the install jail, reuse.

The npm registry is reachable from this machine, so installs use the real one (marked network); detection,
scanning and lock handling are also covered offline in tests/ecosystems/node.
"""

from __future__ import annotations

import json

import pytest

from cloche import Client

PACKAGE_JSON = json.dumps({"name": "app", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}})


def test_builtins_only_needs_no_install(client: Client) -> None:
    with client.create() as box:
        box.write(
            "main.mjs", "import fs from 'node:fs';\nimport path from 'path';\nconsole.log(path.join('a', 'b'));\n"
        )
        result = box.exec(filename="main.mjs")
        assert result.status == "succeeded", result.output
        assert result.output == "a/b\n"
        assert result.install is not None and result.install.source == "none"
        assert result.install.requested == []


def test_invented_names_are_reported_not_installed(client: Client) -> None:
    with client.create() as box:
        box.write("main.js", "try { require('totally-invented-pkg-zq') } catch (e) { console.log('missing') }\n")
        result = box.exec(filename="main.js")
        assert result.status == "succeeded", result.output
        assert result.stdout == "missing\n"
        assert [u.module for u in result.unresolved_imports] == ["totally-invented-pkg-zq"]
        assert "package.json" in (result.unresolved_imports[0].hint or "")
        assert result.install is not None and result.install.installed == []


@pytest.mark.network
def test_package_json_commonjs_installs_once_then_reuses(client: Client) -> None:
    with client.create() as box:
        box.write("package.json", PACKAGE_JSON)
        box.write("main.js", "const isNumber = require('is-number');\nconsole.log(isNumber(5), isNumber('x'));\n")
        first = box.exec(filename="main.js", timeout_seconds=300)
        assert first.status == "succeeded", first.output
        assert first.output == "Installing is-number==7.0.0...\ntrue false\n"
        assert first.install is not None and first.install.source == "package.json"
        assert first.install.requested == ["is-number@7.0.0"]
        second = box.exec(filename="main.js")
        assert second.output == "true false\n"
        assert second.install is not None and second.install.installed == [] and second.install.reused_environment
        assert second.install.duration_ms < 1000  # fingerprint unchanged: no npm, no network
        # Editing the code (not the manifest) reinstalls nothing; a shell command sees the same modules.
        box.write("main.js", "console.log(require('is-number')(1))\n")
        assert box.exec(filename="main.js").output == "true\n"
        assert box.exec(command="ls /node_modules").stdout.split() == ["is-number"]
        # An ES module beside it resolves the same environment (ESM ignores NODE_PATH; /node_modules is on its walk).
        box.write("esm.mjs", "import isNumber from 'is-number';\nconsole.log('esm', isNumber(2));\n")
        esm = box.exec(filename="esm.mjs")
        assert esm.output == "esm true\n" and esm.install is not None and esm.install.reused_environment
        record = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{first.run_id}").json()
        assert record["stdout"] == "true false\n"


@pytest.mark.network
def test_scan_esm_installs_popular_packages_with_inventory(client: Client) -> None:
    code = (
        "import isNumber from 'is-number';\nimport { helper } from './lib/helper.mjs';\n"
        "console.log(isNumber(3), helper());\n"
    )
    helper = "import ms from 'ms';\nexport function helper() { return ms('2s'); }\n"
    with client.create() as box:
        box.write("main.mjs", code)
        box.write("lib/helper.mjs", helper)
        first = box.exec(filename="main.mjs", timeout_seconds=300)
        assert first.status == "succeeded", first.output
        assert first.stdout == "true 2000\n"
        assert first.install is not None and first.install.source == "scan"
        assert sorted(first.install.requested) == ["is-number", "ms"]
        assert first.output.startswith("Installing ")
        again = box.exec(filename="main.mjs")
        assert again.output == "true 2000\n" and again.install is not None and again.install.reused_environment
        sbom = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{first.run_id}/sbom").json()
        found = {c["name"]: c for c in sbom["components"]}
        assert found["is-number"]["purl"].startswith("pkg:npm/is-number@")
        assert found["ms"]["licenses"][0]["license"]["id"] == "MIT"


@pytest.mark.network
def test_unlisted_import_and_install_failure(client: Client) -> None:
    with client.create() as box:
        box.write("package.json", PACKAGE_JSON)
        box.write("main.js", "require('is-number'); require('ms');\n")
        result = box.exec(filename="main.js", timeout_seconds=300)
        assert result.status == "failed"
        assert [(u.module, u.suggested) for u in result.unlisted_imports] == [("ms", "ms")]
        assert "not listed" in result.output
        assert "Cannot find module 'ms'" in result.stderr
        broken = {"dependencies": {"is-number": "7.0.0", "cloche-not-a-real-package-zq": "1.0.0"}}
        box.write("package.json", json.dumps(broken))
        failed = box.exec(filename="main.js", timeout_seconds=300)
        assert failed.status == "install_failed", failed.output
        assert "cloche-not-a-real-package-zq" in failed.output
        assert failed.stdout == ""
