"""Scenario 3: a new sandbox whose lock matches an environment already in the store, vs the first sandbox's install.

Each round is cold: a fresh data dir (empty store, empty installer cache). Sandbox 1 runs the pandas + numpy
project (detect, resolve, download, build: the first install); then sandbox 2, created afterwards with the same
files, runs it (detect, resolve, find the environment, bind it); then sandbox 2 runs again (fingerprint path).
``install_ms`` is the exec result's ``install.duration_ms``; ``wall_ms`` the client's clock around the exec.

In a full run the rounds are the headline's (sandbox 2 runs right after the headline's five execs on the same
server), so this scenario costs nothing extra; alone (``--only shared``) it starts its own cold servers.
"""

from __future__ import annotations

from typing import Any

from bench.harness import Bench, BenchError, Scenario, Stopwatch, Target, expect, log, ratio
from cloche import Client

TARGET_MS = 100.0


def exec_once(client: Client, requirements: str, main: str, expected: str) -> dict[str, Any]:
    """A new sandbox with the project, run twice: the first exec and the unchanged second one."""
    box = client.create(language="python")
    try:
        box.write("requirements.txt", requirements)
        box.write("main.py", main)
        out: dict[str, Any] = {}
        for label in ("first", "second"):
            with Stopwatch() as sw:
                result = box.exec(filename="main.py")
            if result.status != "succeeded" or result.install is None:
                raise BenchError(f"exec {result.status}: {result.output[-1500:]}")
            expect(result.output, expected, "cloche")
            out[label] = {
                "wall_ms": sw.ms,
                "install_ms": float(result.install.duration_ms),
                "server_ms": float(result.duration_ms),
                "reused": result.install.reused_environment,
                "environment": result.install.environment,
            }
        return out
    finally:
        box.delete()


def run(bench: Bench) -> Scenario:
    from bench import headline

    scenario = Scenario("shared", "Shared environments: a new sandbox on an existing environment", __doc__ or "")
    rounds: list[dict[str, Any]] = bench.shared.get("shared_rounds", [])
    if rounds:
        scenario.notes.append(f"Measured inside the headline's {len(rounds)} cold rounds.")
    else:
        for round_no in range(1, bench.reps + 1):
            server = bench.start_server(f"shared-{round_no}")
            try:
                with server.client() as client:
                    first = exec_once(client, headline.REQUIREMENTS, headline.MAIN, headline.EXPECTED)
                    second = exec_once(client, headline.REQUIREMENTS, headline.MAIN, headline.EXPECTED)
                rounds.append({"first_sandbox": first["first"], "new_sandbox": second["first"], **second})
            finally:
                bench.stop_server(server)
            log(f"  shared: round {round_no}/{bench.reps} done")
        scenario.notes.append(f"{len(rounds)} cold rounds of its own (fresh data dir each).")
    labels = {
        "first_sandbox": "first sandbox, first exec (cold build)",
        "new_sandbox": "new sandbox, same lock (store hit)",
        "second": "new sandbox, second exec (unchanged)",
    }
    for item in rounds:
        for key, label in labels.items():
            for metric in ("wall_ms", "install_ms"):
                scenario.add(label, metric, item[key][metric])
    reused = [bool(item["new_sandbox"]["reused"]) for item in rounds]
    same = [item["new_sandbox"]["environment"] == item["first_sandbox"]["environment"] for item in rounds]
    scenario.extra["new_sandbox_reused_environment"] = reused
    scenario.extra["new_sandbox_same_environment_key"] = same
    if not all(reused) or not all(same):
        scenario.notes.append("WARNING: a new sandbox with the same lock did not reuse the stored environment.")
    hit = scenario.med(labels["new_sandbox"], "install_ms")
    cold = scenario.med(labels["first_sandbox"], "install_ms")
    scenario.ratios["first install / store-hit install (install_ms)"] = ratio(cold, hit)
    scenario.ratios["first exec / store-hit exec (wall)"] = ratio(
        scenario.med(labels["first_sandbox"]), scenario.med(labels["new_sandbox"])
    )
    scenario.targets.append(
        Target(
            "new sandbox with an existing environment",
            f"install phase under {TARGET_MS:.0f} ms",
            f"install.duration_ms {hit:.0f} ms (first sandbox's install {cold:.0f} ms; reused: {all(reused)})",
            hit < TARGET_MS and all(reused),
        )
    )
    return scenario
