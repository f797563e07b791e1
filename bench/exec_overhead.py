"""Scenario 1: what a hello-world exec costs through the API, against the bare interpreter on the same file.

Variants, interleaved per repetition: ``python3 hello.py`` and ``node hello.js`` as plain subprocesses, then the
same files through the SDK in sandboxes with the default egress (registries, through the egress forwarder) and
with ``egress: []`` (no network namespace plumbing at all). ``wall_ms`` is the client's clock around one
``exec`` call; ``server_ms`` is the run's ``duration_ms`` (the jailed process), so ``wall - server`` is the
API, detection and bookkeeping around it.

``py cloche`` is forked by the sandbox's warm interpreter once it runs (after the warm-up's first exec);
``py cloche, started cold`` is the same exec on the spawn path alone (it sets a start-up variable of its own).

Two diagnostic baselines locate the overhead: ``bwrap floor`` runs the same file under a minimal bubblewrap jail
(``--unshare-all``; ``/usr``, ``/etc`` and the folder read-only; as root, no cgroup, no seccomp): the price of
namespaces alone. ``js bare + NODE_EXTRA_CA_CERTS`` is node with the CA bundle the jail's environment points it at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bench.harness import (
    HOST_PYTHON,
    NODE,
    Bench,
    Scenario,
    Stopwatch,
    Target,
    baseline_env,
    expect,
    interleave,
    ratio,
    timed,
)
from cloche import Client
from cloche.jail.bwrap import bwrap_path
from cloche.jail.environment import BASE_ENV
from cloche.sdk.client import SandboxHandle

HELLO_PY = "print('hello from python')\n"
HELLO_JS = "console.log('hello from node');\n"
TARGET_MS = {"py": 10.0, "js": 15.0}  # over the bare interpreter, p50
# A start-up variable of the run's own (this one is the interpreter's default) makes the run start cold: the
# spawn path alone, without the warm interpreter (docs/architecture.md, "Warm execution").
COLD_ENV = {"PYTHONHASHSEED": "random"}
REPS = 20  # each repetition is well under a second: more samples make p95 mean something


def _exec(box: SandboxHandle, filename: str, wanted: str, **options: Any) -> Callable[[], Mapping[str, float]]:
    def measure() -> Mapping[str, float]:
        with Stopwatch() as sw:
            result = box.exec(filename=filename, **options)
        expect(result.output, wanted, f"cloche {filename} ({result.status})")
        install_ms = float(result.install.duration_ms) if result.install else 0.0
        return {"wall_ms": sw.ms, "server_ms": float(result.duration_ms), "install_ms": install_ms}

    return measure


def run(bench: Bench) -> Scenario:
    scenario = Scenario(
        "exec",
        "Exec overhead: hello world through the API vs the bare interpreter",
        __doc__ or "",
    )
    work = bench.scratch("exec")
    (work / "hello.py").write_text(HELLO_PY)
    (work / "hello.js").write_text(HELLO_JS)
    env = baseline_env()

    def bare(argv: list[str], wanted: str, environ: dict[str, str] = env) -> Callable[[], Mapping[str, float]]:
        def measure() -> Mapping[str, float]:
            ms, out = timed(argv, cwd=work, env=environ)
            expect(out, wanted, argv[0])
            return {"wall_ms": ms}

        return measure

    client: Client
    with bench.client() as client:
        boxes = {
            ("python", "default"): client.create(language="python"),
            ("python", "none"): client.create(language="python", egress=[]),
            ("node", "default"): client.create(language="node"),
            ("node", "none"): client.create(language="node", egress=[]),
        }
        for (language, _), box in boxes.items():
            if language == "python":
                box.write("hello.py", HELLO_PY)
            else:
                box.write("hello.js", HELLO_JS)
        py, js = "hello from python", "hello from node"
        # /usr and the folder alone: a bind of all of / races with mounts other servers make and remove meanwhile.
        floor = [str(bwrap_path()), "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
        floor += [arg for name in ("bin", "lib", "lib64") for arg in ("--symlink", f"usr/{name}", f"/{name}")]
        floor += ["--ro-bind", "/etc", "/etc", "--ro-bind", str(work), str(work)]
        floor += ["--dev", "/dev", "--proc", "/proc", "--chdir", str(work)]
        ca_env = {**env, "NODE_EXTRA_CA_CERTS": BASE_ENV.get("NODE_EXTRA_CA_CERTS", "")}
        variants = [
            ("py bare", bare([HOST_PYTHON, "hello.py"], py)),
            ("py bwrap floor", bare([*floor, HOST_PYTHON, "hello.py"], py)),
            ("py cloche", _exec(boxes[("python", "default")], "hello.py", py)),
            ("py cloche egress=[]", _exec(boxes[("python", "none")], "hello.py", py)),
            ("py cloche, started cold", _exec(boxes[("python", "default")], "hello.py", py, env=COLD_ENV)),
            ("js bare", bare([NODE, "hello.js"], js)),
            ("js bare + NODE_EXTRA_CA_CERTS", bare([NODE, "hello.js"], js, ca_env)),
            ("js bwrap floor", bare([*floor, NODE, "hello.js"], js)),
            ("js cloche", _exec(boxes[("node", "default")], "hello.js", js)),
            ("js cloche egress=[]", _exec(boxes[("node", "none")], "hello.js", js)),
        ]
        reps = bench.reps if bench.quick else max(REPS, bench.reps)
        interleave(scenario, variants, reps, max(bench.warmup, 1))
        for box in boxes.values():
            box.delete()

    for lang in ("py", "js"):
        bare_ms = scenario.med(f"{lang} bare")
        cold = ["py cloche, started cold"] if lang == "py" else []
        for variant in (f"{lang} cloche", f"{lang} cloche egress=[]", *cold):
            ms = scenario.med(variant)
            scenario.ratios[f"{variant} / {lang} bare (p50)"] = ratio(ms, bare_ms)
            scenario.ratios[f"{variant} - {lang} bare (p50, ms)"] = ms - bare_ms
            overhead = ms - scenario.med(variant, "server_ms")
            scenario.ratios[f"{variant}: wall - server duration (p50, ms)"] = overhead
            egress = "egress: []" if "egress" in variant else "default egress"
            scenario.targets.append(
                Target(
                    f"hello-world .{lang} exec, {egress}{', started cold' if 'cold' in variant else ''}",
                    f"p50 within {TARGET_MS[lang]:.0f} ms of bare",
                    f"{ms:.1f} ms (p95 {scenario.p95(variant):.1f}) vs bare {bare_ms:.1f} ms "
                    f"(p95 {scenario.p95(f'{lang} bare'):.1f}): +{ms - bare_ms:.1f} ms, {ms / bare_ms:.2f}x",
                    ms - bare_ms <= TARGET_MS[lang],
                )
            )
    for lang in ("py", "js"):
        scenario.ratios[f"{lang} bwrap floor - {lang} bare (p50, ms)"] = scenario.med(
            f"{lang} bwrap floor"
        ) - scenario.med(f"{lang} bare")
    scenario.ratios["js bare + NODE_EXTRA_CA_CERTS - js bare (p50, ms)"] = scenario.med(
        "js bare + NODE_EXTRA_CA_CERTS"
    ) - scenario.med("js bare")
    egress_cost = scenario.med("py cloche") - scenario.med("py cloche egress=[]")
    scenario.notes.append(
        f"Default egress (registry allowlist through the forwarder) vs egress: []: {egress_cost:+.0f} ms per Python "
        "exec (difference of p50s; within noise when small)."
    )
    return scenario
