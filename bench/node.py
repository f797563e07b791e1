"""Scenario 5: Node with a ``package.json`` (lodash, dayjs, chalk@4), against ``npm install`` + node every time.

Variants, interleaved per repetition:

- ``cloche first exec``: a new sandbox, upload, exec ``main.js`` (after the warm-up, the environment is in the
  store: this is a new sandbox's first exec, not a cold build; the warm-up's cold exec is in ``extra``).
- ``cloche second exec``: the same sandbox again, unchanged.
- ``npm cold``: a fresh folder and a fresh npm cache: ``npm install`` then ``node main.js``.
- ``npm warm``: a fresh folder, the scenario's npm cache (warm after the warm-up), as a real user's would be.
- ``bare``: ``node main.js`` with ``node_modules`` already installed.

Node dependency installation is being built; while ``exec`` does not install ``package.json`` dependencies, the
cloche variants are recorded as not available (with the error) and the baselines are still measured.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.harness import NODE, NPM, Bench, Scenario, Stopwatch, baseline_env, command, expect, interleave, ratio, timed
from cloche import Client
from cloche.sdk.client import SandboxHandle

PACKAGE_JSON = {
    "name": "bench-node",
    "version": "1.0.0",
    "private": True,
    "dependencies": {"lodash": "^4.17.21", "dayjs": "^1.11.10", "chalk": "^4.1.2"},
}
MAIN = """\
const _ = require("lodash");
const dayjs = require("dayjs");
const chalk = require("chalk");

console.log("sum:", _.sum([1, 2, 3]), "year:", dayjs("2024-01-02").year(), "chalk:", typeof chalk.red);
"""
EXPECTED = "sum: 6 year: 2024 chalk: function"
NPM_INSTALL = [NPM, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=error"]


def write_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2) + "\n")
    (folder / "main.js").write_text(MAIN)
    return folder


def npm_then_node(folder: Path, cache: Path) -> dict[str, float]:
    write_project(folder)
    env = baseline_env(npm_config_cache=str(cache))
    install_ms, _ = timed(NPM_INSTALL, cwd=folder, env=env)
    run_ms, out = timed([NODE, "main.js"], cwd=folder, env=env)
    expect(out, EXPECTED, "npm install + node")
    shutil.rmtree(folder, ignore_errors=True)
    return {"wall_ms": install_ms + run_ms, "install_ms": install_ms, "run_ms": run_ms}


def run(bench: Bench) -> Scenario:
    scenario = Scenario("node", "Node package.json (lodash, dayjs, chalk@4): cloche vs npm install + node", __doc__)
    work = bench.scratch("node")
    bare = write_project(work / "bare")
    command(NPM_INSTALL, cwd=bare, env=baseline_env(npm_config_cache=str(work / "bare-cache")))
    counter = iter(range(1_000_000))
    state: dict[str, Any] = {"box": None, "error": None, "cold": None}

    def bare_node() -> Mapping[str, float]:
        ms, out = timed([NODE, "main.js"], cwd=bare, env=baseline_env())
        expect(out, EXPECTED, "node")
        return {"wall_ms": ms}

    def npm_cold() -> Mapping[str, float]:
        n = next(counter)
        return npm_then_node(work / f"cold-{n}", work / f"cold-cache-{n}")

    def npm_warm() -> Mapping[str, float]:
        return npm_then_node(work / f"warm-{next(counter)}", work / "warm-cache")

    client: Client
    with bench.client() as client:

        def exec_in(box: SandboxHandle) -> Mapping[str, float]:
            if state["error"] is not None:
                return {}
            with Stopwatch() as sw:
                result = box.exec(filename="main.js")
            if result.status != "succeeded" or EXPECTED not in result.output:
                state["error"] = (
                    f"exec of main.js with a package.json: status {result.status}, output:\n"
                    + (result.output.strip()[-800:])
                )
                return {}
            install_ms = float(result.install.duration_ms) if result.install else 0.0
            values = {"wall_ms": sw.ms, "install_ms": install_ms, "server_ms": float(result.duration_ms)}
            if state["cold"] is None:
                state["cold"] = values
            return values

        def first_exec() -> Mapping[str, float]:
            if state["error"] is not None:
                return {}
            box = client.create(language="node")
            box.write("package.json", json.dumps(PACKAGE_JSON, indent=2) + "\n")
            box.write("main.js", MAIN)
            if state["box"] is not None:
                state["box"].delete()
            state["box"] = box
            return exec_in(box)

        def second_exec() -> Mapping[str, float]:
            return exec_in(state["box"]) if state["box"] is not None else {}

        variants = [
            ("cloche first exec", first_exec),
            ("cloche second exec", second_exec),
            ("npm install + node, cold cache", npm_cold),
            ("npm install + node, warm cache", npm_warm),
            ("node, node_modules present", bare_node),
        ]
        interleave(scenario, variants, bench.reps, max(bench.warmup, 1))
        if state["box"] is not None:
            state["box"].delete()

    if state["error"] is not None:
        scenario.error = "cloche does not install package.json dependencies yet: " + state["error"]
    else:
        scenario.extra["cloche_cold_first_exec"] = state["cold"]
        cloche_first, cloche_second = scenario.med("cloche first exec"), scenario.med("cloche second exec")
        scenario.ratios["npm warm / cloche first"] = ratio(scenario.med("npm install + node, warm cache"), cloche_first)
        scenario.ratios["npm warm / cloche second"] = ratio(
            scenario.med("npm install + node, warm cache"), cloche_second
        )
        scenario.ratios["cloche second / node present"] = ratio(
            cloche_second, scenario.med("node, node_modules present")
        )
    scenario.ratios["npm cold / node present"] = ratio(
        scenario.med("npm install + node, cold cache"), scenario.med("node, node_modules present")
    )
    return scenario
