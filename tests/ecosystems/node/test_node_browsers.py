"""Browser automation packages: install jails skip their browser downloads; runs get the host's chromium for
puppeteer only when the host has one (the install itself is tested in tests/service/test_node_deps.py)."""

from __future__ import annotations

from pathlib import Path

from cloche.ecosystems.base import Detection
from cloche.ecosystems.node.browsers import SKIP_BROWSER_DOWNLOADS, browser_env
from cloche.ecosystems.node.ecosystem import NodeEcosystem


def test_install_jails_set_each_documented_skip_variable() -> None:
    env = NodeEcosystem().installer_env()
    for variable in ("PUPPETEER_SKIP_DOWNLOAD", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "CYPRESS_INSTALL_BINARY"):
        assert env[variable] == SKIP_BROWSER_DOWNLOADS[variable]


def test_puppeteer_is_pointed_at_the_hosts_chromium_only_when_both_exist(tmp_path: Path) -> None:
    modules, chromium = tmp_path / "node_modules", tmp_path / "chromium"
    (modules / "puppeteer-core").mkdir(parents=True)
    chromium.write_text("")
    assert browser_env(modules, chromium) == {}  # puppeteer-core reads no variables
    (modules / "puppeteer").mkdir()
    assert browser_env(modules, chromium) == {"PUPPETEER_EXECUTABLE_PATH": chromium.as_posix()}
    assert browser_env(modules, tmp_path / "no-chromium") == {}


def test_runs_of_an_environment_without_puppeteer_get_no_browser_variable(tmp_path: Path) -> None:
    (tmp_path / "node_modules" / "zod").mkdir(parents=True)
    exec_env = NodeEcosystem().exec_env(tmp_path, Detection("node", "scan", ("zod",), "fingerprint"))
    assert "PUPPETEER_EXECUTABLE_PATH" not in exec_env.env and exec_env.env["PATH"].startswith("/node_modules/.bin")
