"""Isolation tiers side by side: what bwrap and gVisor each cost for a hello world and for pandas.

One server, two sandboxes per workload, identical but for ``isolation``. Interleaved per repetition:

- hello: ``hello.py`` in each tier, beside the bare interpreter (the same file as a plain subprocess).
- pandas: the headline's ``requirements.txt`` (pandas + numpy) and ``main.py``; the first exec in each tier
  installs (the second tier finds the environment built by the first: the store is shared, so both take the fast
  path from then on), and the later execs are the fast path: the environment read-only, the program importing
  pandas through the tier's file system. ``bare`` runs it with the packages present.

``wall_ms`` is the client's clock around one exec, ``server_ms`` the run's ``duration_ms``. The difference of
the tiers' p50s is what gVisor's kernel costs per exec: its start (runsc, the Sentry, the Gofer) and every system
call served by the Sentry under the ptrace platform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bench import headline
from bench.harness import HOST_PYTHON, Bench, Scenario, Stopwatch, Target, baseline_env, expect, interleave, timed
from cloche.sdk.client import SandboxHandle

HELLO_PY = "print('hello from python')\n"
HELLO_OUT = "hello from python"
TIERS = ("bwrap", "gvisor")
REPS = 10
# gVisor is a second kernel: it is not expected to be free. This is the budget its start may add to a hello world.
GVISOR_HELLO_BUDGET_MS = 1000.0


def _exec(box: SandboxHandle, filename: str, wanted: str) -> Callable[[], Mapping[str, float]]:
    def measure() -> Mapping[str, float]:
        with Stopwatch() as sw:
            result = box.exec(filename=filename)
        expect(result.output, wanted, f"cloche {filename} ({result.status})")
        return {"wall_ms": sw.ms, "server_ms": float(result.duration_ms)}

    return measure


def run(bench: Bench) -> Scenario:
    scenario = Scenario("tiers", "Isolation tiers: hello world and pandas under bwrap and gVisor", __doc__ or "")
    work = bench.scratch("tiers")
    (work / "hello.py").write_text(HELLO_PY)
    bare_pandas = headline.prepare_bare(bench)
    env = baseline_env()

    def bare_hello() -> Mapping[str, float]:
        ms, out = timed([HOST_PYTHON, "hello.py"], cwd=work, env=env)
        expect(out, HELLO_OUT, "bare")
        return {"wall_ms": ms}

    with bench.client() as client:
        hello = {tier: client.create(language="python", isolation=tier) for tier in TIERS}
        pandas = {tier: client.create(language="python", isolation=tier) for tier in TIERS}
        for tier in TIERS:
            hello[tier].write("hello.py", HELLO_PY)
            pandas[tier].write("requirements.txt", headline.REQUIREMENTS)
            pandas[tier].write("main.py", headline.MAIN)
        for tier in TIERS:  # the first exec installs (once: the second tier reuses the stored environment)
            scenario.add(
                f"pandas first exec, {tier}", "wall_ms", _exec(pandas[tier], "main.py", headline.EXPECTED)()["wall_ms"]
            )
        variants = [("hello bare", bare_hello)]
        variants += [(f"hello {tier}", _exec(hello[tier], "hello.py", HELLO_OUT)) for tier in TIERS]
        variants.append(("pandas bare", lambda: {"wall_ms": headline.bare_run(bare_pandas)}))
        variants += [(f"pandas later, {tier}", _exec(pandas[tier], "main.py", headline.EXPECTED)) for tier in TIERS]
        reps = bench.reps if bench.quick else max(REPS, bench.reps)
        interleave(scenario, variants, reps, max(bench.warmup, 1))
        for box in [*hello.values(), *pandas.values()]:
            box.delete()

    for workload in ("hello", "pandas"):
        bare_ms = scenario.med(f"{workload} bare")
        for tier in TIERS:
            name = f"hello {tier}" if workload == "hello" else f"pandas later, {tier}"
            scenario.ratios[f"{name} - {workload} bare (p50, ms)"] = scenario.med(name) - bare_ms
        gvisor = scenario.med("hello gvisor" if workload == "hello" else "pandas later, gvisor")
        bwrap = scenario.med("hello bwrap" if workload == "hello" else "pandas later, bwrap")
        scenario.ratios[f"{workload}: gvisor - bwrap (p50, ms)"] = gvisor - bwrap
    added = scenario.med("hello gvisor") - scenario.med("hello bwrap")
    scenario.targets.append(
        Target(
            "gVisor tier, hello-world .py exec",
            f"p50 within {GVISOR_HELLO_BUDGET_MS:.0f} ms of the bwrap tier",
            f"{scenario.med('hello gvisor'):.0f} ms vs bwrap {scenario.med('hello bwrap'):.0f} ms (+{added:.0f} ms)",
            added <= GVISOR_HELLO_BUDGET_MS,
        )
    )
    scenario.notes.append(
        "Both tiers run the same environment from the same store (built once); only the kernel differs. gVisor "
        "runs on the ptrace platform (the only one the Debian 12 runsc offers that works on every host)."
    )
    return scenario
