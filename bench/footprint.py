"""Scenario 7: the server's memory, idle and under load, and the disk the shared environment store saves.

- RSS: the server process's ``VmRSS`` (``/proc/<pid>/status``), sampled every 100 ms for a second when idle (right
  after start-up, and again after all the load), and every 50 ms during the concurrency batches (20 x 5 execs;
  measured here with one batch when ``concurrency`` did not run).
- Disk: ``N`` sandboxes get the same pandas + numpy ``requirements.txt`` and run it once. The store holds one
  environment for all of them; without sharing each sandbox would hold its own copy. ``du`` counts allocated blocks.
"""

from __future__ import annotations

import statistics

from bench import concurrency, headline
from bench.harness import Bench, BenchError, Scenario, du_bytes, log, sample_rss
from cloche import Client

SHARING_SANDBOXES = 10
MiB = 1024 * 1024


def run(bench: Bench) -> Scenario:
    scenario = Scenario("footprint", "Server memory and environment store size", __doc__ or "")
    server = bench.server
    idle_start = bench.shared["idle_rss_at_start"]
    under_load: list[int] = bench.shared.get("rss_under_load", [])
    if not under_load:
        ids = concurrency.create_sandboxes(server)
        try:
            _, errors, _, under_load = concurrency.cloche_batch(server, ids)
        finally:
            concurrency.delete_sandboxes(server, ids)
        scenario.notes.append(f"RSS under load from one batch run here ({len(errors)} errors).")
    for value in idle_start:
        scenario.add("server RSS idle, after start-up", "rss_bytes", value)
    for value in under_load:
        scenario.add("server RSS under 20 x 5 concurrent execs", "rss_bytes", value)

    envs = server.data_dir / "envs"
    keys: list[str | None] = []
    client: Client
    with server.client() as client:
        boxes = []
        for n in range(SHARING_SANDBOXES):
            box = client.create(language="python")
            boxes.append(box)
            box.write("requirements.txt", headline.REQUIREMENTS)
            box.write("main.py", headline.MAIN)
            result = box.exec(filename="main.py")
            if result.status != "succeeded" or result.install is None:
                raise BenchError(f"exec {result.status}: {result.output[-1000:]}")
            keys.append(result.install.environment)
            log(f"  footprint: sandbox {n + 1}/{SHARING_SANDBOXES} bound to {result.install.environment}")
        workspaces = du_bytes(server.data_dir / "workspaces")
        for box in boxes:
            box.delete()
    for value in sample_rss(server.pid, 1.0):
        scenario.add("server RSS idle, after all scenarios", "rss_bytes", value)

    distinct = sorted({k for k in keys if k})
    if len(distinct) != 1:
        scenario.notes.append(f"WARNING: {SHARING_SANDBOXES} sandboxes with one lock used {len(distinct)} environments")
    env_bytes = sum(du_bytes(envs / key) for key in distinct)
    copies = sum(du_bytes(envs / key) for key in keys if key)
    store_total = du_bytes(envs)
    scenario.extra.update(
        sandboxes=SHARING_SANDBOXES,
        environments_used=distinct,
        environment_bytes=env_bytes,
        per_sandbox_copies_bytes=copies,
        store_total_bytes=store_total,
        store_entries=len([p for p in envs.iterdir() if not p.name.startswith(".")]),
        workspaces_bytes=workspaces,
    )
    scenario.ratios[f"disk saved by sharing, {SHARING_SANDBOXES} sandboxes (MiB)"] = (copies - env_bytes) / MiB
    scenario.ratios["per-sandbox copies / shared store (x)"] = copies / env_bytes if env_bytes else float("nan")
    idle = statistics.median(idle_start) if idle_start else float("nan")
    load_median = statistics.median(under_load) if under_load else float("nan")
    scenario.notes += [
        f"Server RSS: {idle / MiB:.0f} MiB idle after start-up, {load_median / MiB:.0f} MiB median and "
        f"{max(under_load, default=0) / MiB:.0f} MiB peak under 20 x 5 concurrent execs.",
        f"{SHARING_SANDBOXES} sandboxes with the pandas + numpy lock share one environment of "
        f"{env_bytes / MiB:.0f} MiB; per-sandbox copies would take {copies / MiB:.0f} MiB. The whole store (every "
        f"scenario's environments on this server, {scenario.extra['store_entries']} entries) is "
        f"{store_total / MiB:.0f} MiB; the {SHARING_SANDBOXES} workspaces {workspaces / MiB:.1f} MiB.",
    ]
    return scenario
