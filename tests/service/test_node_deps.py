"""Node dependencies through the whole service: detect, vouch, lock with npm, `npm ci` once in the install
jail, reuse.

Vouching and back-off run against a local registry folder (tests/ecosystems/node/_npm_registry.py), which
cloche serves to the real npm inside the install jail; the public registry is used by the tests marked
network. Detection, scanning and lock handling are also covered offline in tests/ecosystems/node.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cloche import Client
from conftest import running_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "node"))
from _npm_registry import standard_registry

from tests_support import run_file

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
        result = run_file(
            box, "main.js", "try { require('totally-invented-pkg-zq') } catch (e) { console.log('missing') }\n"
        )
        assert result.stdout == "missing\n"
        assert [u.module for u in result.unresolved_imports] == ["totally-invented-pkg-zq"]
        assert "package.json" in (result.unresolved_imports[0].hint or "")
        assert result.install is not None and result.install.installed == []


@pytest.mark.network
def test_package_json_commonjs_installs_once_then_reuses(client: Client) -> None:
    with client.create() as box:
        box.write("package.json", PACKAGE_JSON)
        first = run_file(
            box,
            "main.js",
            "const isNumber = require('is-number');\nconsole.log(isNumber(5), isNumber('x'));\n",
            timeout_seconds=300,
        )
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
        result = run_file(
            box, "main.js", "require('is-number'); require('ms');\n", status="failed", timeout_seconds=300
        )
        assert [(u.module, u.suggested) for u in result.unlisted_imports] == [("ms", "ms")]
        assert "not listed" in result.output
        assert "Cannot find module 'ms'" in result.stderr
        broken = {"dependencies": {"is-number": "7.0.0", "cloche-not-a-real-package-zq": "1.0.0"}}
        box.write("package.json", json.dumps(broken))
        failed = box.exec(filename="main.js", timeout_seconds=300)
        assert failed.status == "install_failed", failed.output
        assert "cloche-not-a-real-package-zq" in failed.output
        assert failed.stdout == ""


def registry_env(root: Path) -> dict[str, str]:
    """The local npm registry folder for ``registry_server`` (conftest): no public registry involved."""
    return {"CLOCHE_NPM_REGISTRY": f"file://{standard_registry(root / 'registry')}"}


def test_established_package_off_the_list_installs_and_a_week_old_one_is_refused(cloche: Client) -> None:
    code = (
        "console.log(require('old-helper').version);\n"
        "try { require('fresh-helper') } catch (e) { console.log(e.code) }\n"
        "try { require('zzqx-not-real-42') } catch (e) { console.log(e.code) }\n"
    )
    with cloche.create() as box:
        result = run_file(box, "main.js", code, timeout_seconds=300)
        assert result.stdout == "1.2.0\nMODULE_NOT_FOUND\nMODULE_NOT_FOUND\n"
        assert result.install is not None and result.install.requested == ["old-helper"]
        [resolved] = result.install.resolved
        assert (resolved.package, resolved.source) == ("old-helper", "registry facts")
        assert [i.name for i in result.install.installed] == ["old-helper"]
        hints = {u.module: u.hint or "" for u in result.unresolved_imports}
        assert "first released 7 days ago" in hints["fresh-helper"]
        assert "has no package named" in hints["zzqx-not-real-42"]
        assert box.exec(command="ls /node_modules").stdout.split() == ["old-helper"]


def test_backoff_to_releases_that_fit_the_code(cloche: Client) -> None:
    code = "console.log(require('subpath-lib/extra'));\nconsole.log(require('esm-lib')());\n"
    with cloche.create() as box:
        result = run_file(box, "main.js", code, timeout_seconds=300)
        assert result.stdout == "extra 1.5.0\nesm-lib 2.1.0 (commonjs)\n"
        assert result.install is not None
        assert sorted(result.install.requested) == ["esm-lib@2.1.0", "subpath-lib@1.5.0"]
        reasons = {r.package: r.reason or "" for r in result.install.resolved}
        assert "backed off: 2.0.0: does not export './extra'" in reasons["subpath-lib"]
        assert "backed off: 3.0.0: is an ES module only" in reasons["esm-lib"]
        # The same package imported from an ES module gets the newest release.
        box.write("esm.mjs", "import greet from 'esm-lib';\nconsole.log(greet());\n")
        esm = box.exec(filename="esm.mjs", timeout_seconds=300)
        assert esm.stdout == "esm-lib 3.0.0 (esm)\n", esm.output
        assert esm.install is not None and esm.install.requested == ["esm-lib"]


def test_after_install_a_subpath_that_does_not_load_backs_off(cloche: Client) -> None:
    with cloche.create() as box:
        result = run_file(box, "main.js", "console.log(require('moved-file-lib/legacy'));\n", timeout_seconds=300)
        assert result.stdout == "legacy 1.0.0\n"
        assert result.install is not None and result.install.verified is True
        [step] = result.install.recovery
        assert (step.action, step.module, step.requirement, step.outcome) == (
            "version_backoff",
            "moved-file-lib/legacy",
            "moved-file-lib@1.0.0",
            "fixed",
        )
        assert "moved-file-lib@2.0.0: MODULE_NOT_FOUND" in step.detail


def test_after_install_a_missing_named_export_backs_off(cloche: Client) -> None:
    with cloche.create() as box:
        result = run_file(
            box, "main.mjs", "import { oldName } from 'named-lib';\nconsole.log(oldName);\n", timeout_seconds=300
        )
        assert result.stdout == "oldName from 1.0.0\n"
        assert result.install is not None and result.install.verified is True
        [step] = result.install.recovery
        assert (step.requirement, step.outcome) == ("named-lib@1.0.0", "fixed")
        assert "does not provide an export named 'oldName'" in step.detail


def test_install_script_that_downloads_is_reported_as_such(cloche: Client) -> None:
    with cloche.create() as box:
        result = run_file(
            box, "main.js", "console.log(require('downloads-binary'));\n", status="install_failed", timeout_seconds=300
        )
        assert result.install is not None and result.install.error is not None
        error = result.install.error
        assert error.startswith("downloads-binary's install script (node install.js) tried to download")
        assert "https://binaries.example.com/tool-1.0.0-linux-x64.tar.gz" in error
        assert "set TOOL_SKIP_DOWNLOAD=1 to skip" in error  # the package's own advice
        assert "npm error" not in error and "    at " not in error


REMEMBERED = "failed to build"


def test_a_failed_build_is_answered_from_memory_until_the_needs_change(cloche: Client) -> None:
    """The lock of a failed build is not built again for CLOCHE_FAILED_BUILD_TTL_SECONDS: a new sandbox with the
    same needs gets the same failure, marked as remembered; other needs are another lock and build at once."""
    same = "require('downloads-binary');\nrequire('subpath-lib');\n"
    errors = []
    for _ in range(2):
        with cloche.create() as box:
            result = run_file(box, "main.js", same, status="install_failed", timeout_seconds=300)
            assert result.install is not None and result.install.error is not None
            errors.append(result.install.error)
    first, again = errors
    assert first.startswith("downloads-binary's install script") and REMEMBERED not in first
    assert again.startswith(first) and REMEMBERED in again and "CLOCHE_FAILED_BUILD_TTL_SECONDS" in again
    with cloche.create() as box:
        box.write("main.js", "require('downloads-binary');\nrequire('old-helper');\n")
        other = box.exec(filename="main.js", timeout_seconds=300)
        assert other.install is not None and other.install.error is not None
        assert (
            other.install.error.startswith("downloads-binary's install script")
            and REMEMBERED not in other.install.error
        )


def test_failed_builds_are_retried_every_time_with_no_memory() -> None:
    def settings(root: Path) -> dict[str, str]:
        return {**registry_env(root), "CLOCHE_FAILED_BUILD_TTL_SECONDS": "0"}

    with running_server(settings, timeout=60) as server, server.client() as client:
        for _ in range(2):
            with client.create() as box:
                box.write("main.js", "require('downloads-binary');\n")
                result = box.exec(filename="main.js", timeout_seconds=300)
                assert result.install is not None and result.install.error is not None
                assert result.install.error.startswith("downloads-binary's install script")
                assert REMEMBERED not in result.install.error


def test_browser_download_is_skipped_so_the_library_loads(cloche: Client) -> None:
    """A browser automation package installs without its browser (its documented skip variable is set in the
    install jail); with no chromium on the host, nothing points it at one."""
    with cloche.create() as box:
        result = run_file(
            box,
            "main.js",
            "const kit = require('browser-kit');\nconsole.log(kit.skipped, kit.executablePath);\n",
            timeout_seconds=300,
        )
        assert result.stdout == "PUPPETEER_SKIP_DOWNLOAD=true null\n"
        assert result.install is not None and [i.name for i in result.install.installed] == ["browser-kit"]


def test_install_script_that_ignores_the_proxy_is_reported_by_the_host_it_tried(cloche: Client) -> None:
    with cloche.create() as box:
        result = run_file(
            box, "main.js", "console.log(require('fetches-directly'));\n", status="install_failed", timeout_seconds=300
        )
        error = (result.install.error if result.install else None) or ""
        assert error.startswith(
            "fetches-directly's install script (node install.js) tried to download from outside the package "
            "registries: downloads.example.org."
        ), error
        assert "npm error" not in error and "    at " not in error


def test_native_addon_builds_against_the_installed_node_headers(cloche: Client) -> None:
    with cloche.create() as box:
        result = run_file(box, "main.js", "console.log(require('native-addon').answer());\n", timeout_seconds=600)
        assert result.stdout == "42\n"


WELL_KNOWN = ("@octokit/rest", "ioredis", "pg", "@slack/bolt", "koa-router", "zod", "@aws-sdk/client-s3", "mongoose")


@pytest.mark.network
def test_well_known_packages_without_package_json_run_first_time(client: Client) -> None:
    code = "".join(f"require({name!r});\n" for name in WELL_KNOWN) + "console.log('all loaded');\n"
    with client.create() as box:
        result = run_file(box, "main.js", code, timeout_seconds=600)
        assert result.stdout == "all loaded\n"
        assert result.unresolved_imports == []
        assert result.install is not None
        assert {r.package for r in result.install.resolved} == set(WELL_KNOWN)
        assert all(r.source in ("popularity list", "registry facts") and r.reason for r in result.install.resolved)


@pytest.mark.network
def test_puppeteer_installs_without_its_browser_and_says_so_at_launch(client: Client) -> None:
    code = (
        "const puppeteer = require('puppeteer');\n"
        "console.log(typeof puppeteer.launch);\n"
        "puppeteer.launch().catch((e) => { console.log(e.message.split('\\n')[0]); });\n"
    )
    with client.create() as box:
        result = run_file(box, "main.js", code, timeout_seconds=600)
        assert result.stdout.startswith("function\nCould not find Chrome"), result.stdout
        assert result.install is not None and "puppeteer" in {r.package for r in result.install.resolved}
