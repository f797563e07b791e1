"""Code contexts: what one cell costs in a running kernel, against a hello-world exec in the same sandbox.

``cell`` is ``x += 1; x`` in the sandbox's default context (the kernel already running, nothing to install):
the client's clock around one ``run_code`` call, and the server's ``duration_ms`` (dependency step, cell,
answer). ``exec`` runs a one-line file as a fresh jailed process. A kernel's start (the first cell, with the
kernel tools already in the store) is measured once per repetition on a new context and reported as a note.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from bench.harness import Bench, Scenario, Stopwatch, Target, expect, interleave
from cloche.sdk.client import SandboxHandle

TARGET_MS = 50.0  # a cell in a running kernel, p50 over the API
REPS = 20


def _cell(box: SandboxHandle) -> Callable[[], Mapping[str, float]]:
    def measure() -> Mapping[str, float]:
        with Stopwatch() as sw:
            result = box.run_code("x += 1\nx")
        if result.status != "ok":
            expect(result.status, "ok", "cell")
        return {"wall_ms": sw.ms, "server_ms": float(result.duration_ms)}

    return measure


def _exec(box: SandboxHandle) -> Callable[[], Mapping[str, float]]:
    def measure() -> Mapping[str, float]:
        with Stopwatch() as sw:
            result = box.exec(filename="hello.py")
        expect(result.output, "hello", "exec")
        return {"wall_ms": sw.ms, "server_ms": float(result.duration_ms)}

    return measure


def run(bench: Bench) -> Scenario:
    scenario = Scenario("contexts", "Code contexts: a cell in a running kernel vs an exec", __doc__ or "")
    with bench.client() as client:
        box = client.create(language="python")
        box.write("hello.py", "print('hello')\n")
        started = time.monotonic()
        box.run_code("x = 0", timeout=600)  # the kernel tools are installed once, then the kernel starts
        scenario.notes.append(
            f"First cell of a new server (kernel tools installed, kernel started): "
            f"{(time.monotonic() - started) * 1000:.0f} ms"
        )
        starts = []
        for _ in range(3):
            context = box.contexts.create()
            with Stopwatch() as sw:
                box.run_code("1", context=context, timeout=120)
            starts.append(sw.ms)
            box.contexts.delete(context)
        scenario.notes.append(
            f"A new context's first cell (its kernel starting): {sorted(starts)[1]:.0f} ms (median of 3)"
        )
        reps = bench.reps if bench.quick else max(REPS, bench.reps)
        interleave(scenario, [("cell", _cell(box)), ("exec", _exec(box))], reps, max(bench.warmup, 1))
        box.delete()
    cell, exec_ms = scenario.med("cell"), scenario.med("exec")
    scenario.ratios["cell / exec (p50)"] = cell / exec_ms if exec_ms else float("nan")
    scenario.targets.append(
        Target(
            "a cell in a running kernel",
            f"p50 within {TARGET_MS:.0f} ms",
            f"{cell:.1f} ms (exec {exec_ms:.1f} ms)",
            cell <= TARGET_MS,
        )
    )
    return scenario
