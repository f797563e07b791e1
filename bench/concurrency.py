"""Scenario 6: 20 sandboxes x 5 execs in parallel (``cloche.AsyncClient``), against 20 x 5 bare interpreters.

Sandbox creation is timed too (`create_ms`: one after another, each building and mounting its volume).
Each repetition is one batch: 20 workers start together, each runs ``hello.py`` five times in a row in its own
sandbox (default egress), every exec's latency recorded. The baseline batch does the same with 20 threads each
running ``/usr/bin/python3 hello.py`` five times as a subprocess. Batches alternate (cloche, bare, cloche, ...).
The server's VmRSS is sampled every 50 ms during cloche batches (scenario ``footprint`` reports it).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import (
    HOST_PYTHON,
    Bench,
    RssSampler,
    Scenario,
    Server,
    Stopwatch,
    Target,
    baseline_env,
    log,
    percentile,
    ratio,
    timed,
)
from cloche import AsyncClient

SANDBOXES = 20
EXECS = 5
HELLO = "print('hello from sandbox')\n"
EXPECTED = "hello from sandbox"
P95_OVER_P50 = 3.0


async def _cloche_batch(url: str, ids: list[str]) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []

    async with AsyncClient(url) as client:

        async def worker(sandbox_id: str) -> None:
            box = client.sandbox(sandbox_id)
            for _ in range(EXECS):
                started = time.perf_counter()
                try:
                    result = await box.exec(filename="hello.py")
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                if result.status != "succeeded" or EXPECTED not in result.output:
                    try:
                        record = await box.run(result.run_id)
                        why = f"error={record.error!r} argv={record.argv}"
                    except Exception as exc:
                        why = f"(run record unavailable: {exc})"
                    errors.append(
                        f"{sandbox_id} {result.run_id}: status {result.status}, exit code {result.exit_code}, "
                        f"{why}, stdout {result.stdout[-200:]!r}, stderr {result.stderr[-600:]!r}"
                    )

        with Stopwatch() as sw:
            await asyncio.gather(*(worker(i) for i in ids))
    return latencies, errors, sw.ms


def cloche_batch(server: Server, ids: list[str]) -> tuple[list[float], list[str], float, list[int]]:
    with RssSampler(server.pid) as rss:
        latencies, errors, wall = asyncio.run(_cloche_batch(server.url, ids))
    return latencies, errors, wall, rss.samples


def bare_batch(folder: Path) -> tuple[list[float], list[str], float]:
    env = baseline_env()

    def worker(_: int) -> list[float]:
        out = []
        for _ in range(EXECS):
            ms, _out = timed([HOST_PYTHON, "hello.py"], cwd=folder, env=env)
            out.append(ms)
        return out

    with Stopwatch() as sw, ThreadPoolExecutor(SANDBOXES) as pool:
        per_worker = list(pool.map(worker, range(SANDBOXES)))
    return [ms for chunk in per_worker for ms in chunk], [], sw.ms


def _record(scenario: Scenario, variant: str, latencies: list[float], errors: list[str], wall: float) -> None:
    for ms in latencies:
        scenario.add(variant, "latency_ms", ms)
    scenario.add(variant, "batch_wall_ms", wall)
    scenario.add(variant, "throughput_per_s", len(latencies) / (wall / 1000))
    scenario.add(variant, "errors", float(len(errors)))


def create_sandboxes(server: Server, create_ms: list[float] | None = None) -> list[str]:
    """Create the sandboxes one after another; ``create_ms`` collects each create's latency (mkfs + mount)."""
    ids = []
    with server.client() as client:
        for _ in range(SANDBOXES):
            with Stopwatch() as sw:
                box = client.create(language="python")
            if create_ms is not None:
                create_ms.append(sw.ms)
            box.write("hello.py", HELLO)
            ids.append(box.id)
    return ids


def delete_sandboxes(server: Server, ids: list[str]) -> None:
    with server.client() as client:
        for sandbox_id in ids:
            client.sandbox(sandbox_id).delete()


def run(bench: Bench) -> Scenario:
    scenario = Scenario("concurrency", f"{SANDBOXES} sandboxes x {EXECS} execs in parallel", __doc__ or "")
    folder = bench.scratch("concurrency")
    (folder / "hello.py").write_text(HELLO)
    server = bench.server
    create_ms: list[float] = []
    ids = create_sandboxes(server, create_ms)
    for ms in create_ms:
        scenario.add("cloche", "create_ms", ms)
    rss: list[int] = []
    all_errors: list[str] = []
    try:
        for round_no in range(bench.warmup + bench.reps):
            latencies, errors, wall, samples = cloche_batch(server, ids)
            bare_lat, bare_err, bare_wall = bare_batch(folder)
            if round_no < bench.warmup:
                continue
            _record(scenario, "cloche", latencies, errors, wall)
            _record(scenario, "bare python3", bare_lat, bare_err, bare_wall)
            rss += samples
            all_errors += errors
            log(f"  concurrency: rep {round_no - bench.warmup + 1}/{bench.reps}: {wall:.0f} ms, {len(errors)} errors")
    finally:
        delete_sandboxes(server, ids)
    bench.shared["rss_under_load"] = rss
    lat = scenario.series("cloche", "latency_ms")
    p50, p95 = percentile(lat, 50), percentile(lat, 95)
    bare_lat = scenario.series("bare python3", "latency_ms")
    scenario.ratios["cloche p95 / p50"] = ratio(p95, p50)
    scenario.ratios["cloche p50 / bare p50"] = ratio(p50, percentile(bare_lat, 50))
    scenario.ratios["bare throughput / cloche throughput"] = ratio(
        scenario.med("bare python3", "throughput_per_s"), scenario.med("cloche", "throughput_per_s")
    )
    extra: dict[str, Any] = {"errors": all_errors[:20], "error_count": len(all_errors), "execs": len(lat)}
    scenario.extra.update(extra)
    throughput = scenario.med("cloche", "throughput_per_s")
    scenario.targets.append(
        Target(
            f"concurrency: {SANDBOXES} sandboxes x {EXECS} execs",
            f"zero errors and p95 under {P95_OVER_P50:.0f}x p50",
            f"{len(all_errors)} errors in {len(lat)} execs; p50 {p50:.0f} ms, p95 {p95:.0f} ms ({p95 / p50:.2f}x); "
            f"{throughput:.1f} execs/s",
            not all_errors and p95 < P95_OVER_P50 * p50,
        )
    )
    return scenario
