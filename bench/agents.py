"""Scenario: node agents. Execs per second with one agent vs two, and what the agent protocol adds per exec.

Everything runs on one PostgreSQL (a throwaway cluster, as the tests make it). Servers: ``in-process`` (an API
server running its sandboxes itself, on the database), two node agents ``a1`` and ``a2`` (``cloche serve
--agent``), an API server placing on ``a1`` only and one placing on both.

- Latency: one hello-world exec at a time, interleaved, in-process vs through one agent; the difference of the
  p50s is the protocol's added latency (one more HTTP hop, the exec streamed as JSON lines).
- Throughput: ``SANDBOXES`` sandboxes, each running ``EXECS`` hello-world execs in a row, all at once
  (``AsyncClient``); execs per second with every sandbox on ``a1``, then spread over ``a1`` and ``a2``. On a
  machine whose cores all agents share, two agents cannot add CPU: the number shows what placement costs or
  gains there, not what a second host would.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.harness import Bench, Scenario, Server, Stopwatch, expect, interleave, log
from cloche import AsyncClient
from cloche.sdk.client import SandboxHandle

HELLO = "print('hello from an agent')\n"
EXPECTED = "hello from an agent"
SANDBOXES = 8
EXECS = 5
TOKEN = "bench-agent-token"
TESTS = Path(__file__).resolve().parent.parent / "tests"


def _cluster() -> Any:
    """The tests' throwaway PostgreSQL cluster (tests/pg_cluster.py), one place for how to start one."""
    sys.path.insert(0, str(TESTS))
    from bench.harness import free_port
    from pg_cluster import PostgresCluster

    return PostgresCluster(free_port()).start()


def _exec(box: SandboxHandle) -> Callable[[], Mapping[str, float]]:
    def measure() -> Mapping[str, float]:
        with Stopwatch() as sw:
            result = box.exec(filename="hello.py")
        expect(result.output, EXPECTED, f"exec on {box.id} ({result.status})")
        return {"wall_ms": sw.ms, "server_ms": float(result.duration_ms)}

    return measure


async def _batch(url: str, ids: list[str]) -> tuple[int, float]:
    async with AsyncClient(url) as client:

        async def worker(sandbox_id: str) -> int:
            box = client.sandbox(sandbox_id)
            done = 0
            for _ in range(EXECS):
                result = await box.exec(filename="hello.py")
                done += EXPECTED in result.output
            return done

        started = time.perf_counter()
        counts = await asyncio.gather(*(worker(i) for i in ids))
    return sum(counts), time.perf_counter() - started


def _throughput(scenario: Scenario, variant: str, api: Server, reps: int) -> None:
    with api.client() as client:
        boxes = [client.create(language="python") for _ in range(SANDBOXES)]
        for box in boxes:
            box.write("hello.py", HELLO)
        ids = [b.id for b in boxes]
        asyncio.run(_batch(api.url, ids[:2]))  # warm-up
        for _ in range(reps):
            ok, seconds = asyncio.run(_batch(api.url, ids))
            scenario.add(variant, "execs_per_s", ok / seconds)
            scenario.add(variant, "failed", float(SANDBOXES * EXECS - ok))
        for box in boxes:
            box.delete()


def run(bench: Bench) -> Scenario:
    scenario = Scenario("agents", "Node agents: execs/s with 1 vs 2 agents, protocol latency", __doc__ or "")
    cluster = _cluster()
    try:
        url = cluster.new_database()
        shared = {
            "CLOCHE_DATABASE_URL": url,
            "CLOCHE_AGENT_TOKEN": TOKEN,
            "CLOCHE_SECRETS_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        local = bench.start_server("in-process", {**shared, "CLOCHE_NODE_NAME": "n0"})
        agents = {
            name: bench.start_server(name, {**shared, "CLOCHE_NODE_NAME": name}, ["--agent"]) for name in ("a1", "a2")
        }
        one = bench.start_server("api-1-agent", {**shared, "CLOCHE_AGENTS": f"a1={agents['a1'].url}"})
        both = ",".join(f"{n}={s.url}" for n, s in agents.items())
        two = bench.start_server("api-2-agents", {**shared, "CLOCHE_AGENTS": both})

        with local.client() as lc, one.client() as ac:
            near, far = lc.create(language="python"), ac.create(language="python")
            for box in (near, far):
                box.write("hello.py", HELLO)
            reps = bench.reps if bench.quick else max(20, bench.reps)
            interleave(scenario, [("in-process", _exec(near)), ("1 agent", _exec(far))], reps, bench.warmup)
            near.delete()
            far.delete()
        log("agents: throughput with 1 agent")
        _throughput(scenario, "1 agent", one, bench.reps)
        log("agents: throughput with 2 agents")
        _throughput(scenario, "2 agents", two, bench.reps)
    finally:
        for srv in list(bench.servers):
            if srv.root.name.startswith(("in-process", "a1", "a2", "api-")):
                bench.stop_server(srv)
                bench.servers.remove(srv)
        cluster.stop()

    added = scenario.med("1 agent") - scenario.med("in-process")
    scenario.ratios["agent protocol added latency (p50, ms)"] = added
    scenario.ratios["execs/s, 1 agent (p50)"] = scenario.med("1 agent", "execs_per_s")
    scenario.ratios["execs/s, 2 agents (p50)"] = scenario.med("2 agents", "execs_per_s")
    scenario.notes.append(
        f"{SANDBOXES} sandboxes x {EXECS} hello-world execs at once per repetition; all agents share this machine's "
        f"{os.cpu_count()} cores, so a second agent adds no CPU here."
    )
    return scenario
