"""Where a hello-world exec's time goes, step by step, from the server's own monotonic clock.

A server of its own runs with ``CLOCHE_STEP_TIMINGS=true``: each exec request logs when each of its steps ended
(``cloche/steps.py``; the steps are marks in the route, ``ExecService``, the runner, the spawn helper, the warm
interpreter's client and the audit trail). Interleaved per repetition, in one sandbox with the default egress:
``py warm`` (forked by the warm interpreter) and ``py cold`` (``PYTHONHASHSEED=random``: the spawn path); ``py
warm egress=[]`` in a sandbox without network; ``js`` in another sandbox; beside them the bare interpreters.

Per step: ``step_ms`` is the time since the previous mark, ``share_pct`` that step's share of the server's total
for the same request (request received to response sent); ``client`` is the client's wall clock and ``client -
server`` what the SDK, HTTP and the socket cost around the server's part. Read the shares, not the milliseconds,
on a busy host: each exec is measured against itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.exec_overhead import COLD_ENV, HELLO_JS, HELLO_PY
from bench.harness import HOST_PYTHON, NODE, Bench, Scenario, Stopwatch, baseline_env, expect, interleave, timed
from cloche.sdk.client import SandboxHandle

REPS = 20
TOTAL = "response sent"


def _steps(server_log: str) -> list[list[tuple[str, float]]]:
    """The ``exec steps`` lines of a server log, oldest first."""
    found: list[list[tuple[str, float]]] = []
    for line in server_log.splitlines():
        if '"exec steps"' not in line:
            continue
        entry: dict[str, Any] = json.loads(line)
        found.append([(str(name), float(ms)) for name, ms in entry["steps"]])
    return found


def _record(scenario: Scenario, variant: str, steps: list[tuple[str, float]], client_ms: float) -> None:
    total = dict(steps).get(TOTAL, steps[-1][1])
    previous = 0.0
    for name, at in steps[1:]:
        scenario.add(f"{variant}: {name}", "step_ms", at - previous)
        scenario.add(f"{variant}: {name}", "share_pct", 100 * (at - previous) / total if total else 0.0)
        previous = at
    scenario.add(f"{variant}: server total", "step_ms", total)
    scenario.add(f"{variant}: client", "step_ms", client_ms)
    scenario.add(f"{variant}: client - server", "step_ms", client_ms - total)


def run(bench: Bench) -> Scenario:
    scenario = Scenario("profile", "Exec profile: a hello-world exec's steps, from the server's clock", __doc__ or "")
    work = bench.scratch("profile")
    (work / "hello.py").write_text(HELLO_PY)
    (work / "hello.js").write_text(HELLO_JS)
    env = baseline_env()
    server = bench.start_server("profile", env={"CLOCHE_STEP_TIMINGS": "true"})
    order: list[tuple[str, float]] = []  # (variant, client ms) in request order, matched to the log's lines

    def cloche(box: SandboxHandle, variant: str, filename: str, **options: Any) -> Callable[[], Mapping[str, float]]:
        def measure() -> Mapping[str, float]:
            with Stopwatch() as sw:
                result = box.exec(filename=filename, **options)
            expect(result.output, "hello from", variant)
            warm = result.warm is not None and result.warm.used
            forked = "" if warm or not variant.startswith("py warm") else " (not forked)"
            order.append((f"{variant}{forked}", sw.ms))
            return {}

        return measure

    def bare(argv: list[str]) -> Callable[[], Mapping[str, float]]:
        def measure() -> Mapping[str, float]:
            ms, out = timed(argv, cwd=work, env=env)
            expect(out, "hello from", argv[0])
            return {"wall_ms": ms}

        return measure

    try:
        with server.client() as client:
            py, js = client.create(language="python"), client.create(language="node")
            closed = client.create(language="python", egress=[])
            closed.write("hello.py", HELLO_PY)
            py.write("hello.py", HELLO_PY)
            js.write("hello.js", HELLO_JS)
            variants = [
                ("py bare", bare([HOST_PYTHON, "hello.py"])),
                ("py warm", cloche(py, "py warm", "hello.py")),
                ("py warm egress=[]", cloche(closed, "py warm egress=[]", "hello.py")),
                ("py cold", cloche(py, "py cold", "hello.py", env=COLD_ENV)),
                ("js bare", bare([NODE, "hello.js"])),
                ("js", cloche(js, "js", "hello.js")),
            ]
            reps = bench.reps if bench.quick else max(REPS, bench.reps)
            interleave(scenario, variants, reps, max(bench.warmup, 1))
            for box in (py, closed, js):
                box.delete()
        logged = _steps(server.log.read_text())
    finally:
        bench.stop_server(server)
    if len(logged) != len(order):
        raise RuntimeError(f"{len(logged)} exec steps lines in the server log for {len(order)} execs")
    skip = max(bench.warmup, 1) * 4  # the warm-up's execs
    for (variant, client_ms), steps in zip(order[skip:], logged[skip:], strict=True):
        _record(scenario, variant, steps, client_ms)
    scenario.notes.append(
        "step_ms: time since the previous step's mark (the first: since the request arrived); share_pct: of the "
        "server's total for that request. Steps that do not occur in a variant are absent from its rows."
    )
    return scenario


def table(doc: dict[str, Any]) -> str:
    """The profile as one table (step; per variant the p50 of its time and of its share), from a results JSON."""
    series: dict[str, dict[str, Any]] = doc["scenarios"]["profile"]["series"]
    variants = list(dict.fromkeys(name.partition(": ")[0] for name in series if ": " in name))
    steps = list(dict.fromkeys(name.partition(": ")[2] for name in series if ": " in name))
    lines = ["| step | " + " | ".join(f"{v}: ms (share)" for v in variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for step in steps:
        cells = []
        for variant in variants:
            found = series.get(f"{variant}: {step}", {})
            ms, share = found.get("step_ms", {}).get("median"), found.get("share_pct", {}).get("median")
            cells.append("" if ms is None else f"{ms:.2f}" + ("" if share is None else f" ({share:.0f}%)"))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(table(json.loads(Path(sys.argv[1]).read_text())))
