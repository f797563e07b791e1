"""``python -m bench [--quick] [--only SCENARIO[,SCENARIO...]] [--reps N] [--keep]``: run the benchmarks."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import report
from bench.harness import Bench, Scenario, loadavg, log, machine, source_fingerprint

# Order matters: footprint reads the RSS samples concurrency leaves behind (it measures its own when run alone).
SCENARIOS: dict[str, str] = {
    "exec": "bench.exec_overhead",
    "profile": "bench.exec_profile",
    "contexts": "bench.contexts",
    "headline": "bench.headline",
    "tiers": "bench.tiers",
    "shared": "bench.shared_env",
    "scan": "bench.import_scan",
    "resolve": "bench.resolver",
    "node": "bench.node",
    "corpus": "bench.corpus",
    "concurrency": "bench.concurrency",
    "agents": "bench.agents",
    "footprint": "bench.footprint",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 repetitions, smaller loads: for iteration only")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--reps", type=int, default=None, help="measured repetitions (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up repetitions, discarded (default 1)")
    parser.add_argument("--full-seed", action="store_true", help="headline: run all 5 of the seed's execs per round")
    parser.add_argument("--corpus-limit", type=int, default=None, help="corpus: entries per corpus (default all)")
    parser.add_argument(
        "--corpus-ecosystems", default="python,node", help="corpus: which corpora, comma-separated (default both)"
    )
    parser.add_argument("--corpus-jobs", type=int, default=3, help="corpus: entries measured at a time (default 3)")
    parser.add_argument(
        "--corpus-budget", type=float, default=3600.0, help="corpus: seconds before remaining entries are skipped"
    )
    parser.add_argument(
        "--corpus-resume",
        action="store_true",
        help="corpus: measure only the entries the results' corpus.json (and --corpus-records) lack, and merge",
    )
    parser.add_argument(
        "--corpus-records",
        type=Path,
        action="append",
        default=[],
        metavar="JSONL",
        help="corpus, with --corpus-resume: an earlier run's records.jsonl whose entries count as measured",
    )
    parser.add_argument(
        "--corpus-retry-failed",
        action="store_true",
        help="corpus, with --corpus-resume: measure again the entries cloche failed on (new records replace old)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir and server data dirs")
    parser.add_argument("--out", type=Path, default=report.RESULTS, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    only = [name.strip() for part in args.only for name in part.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.only = only
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if os.geteuid() != 0:
        print("the bench starts a real cloche server, which needs root", file=sys.stderr)
        return 2
    reps = args.reps or (2 if args.quick else 5)
    names = args.only or list(SCENARIOS)
    partial = bool(args.quick or args.only or args.reps or args.corpus_limit)
    started = time.monotonic()
    meta = {
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "reps": reps,
        "warmup": args.warmup,
        "quick": args.quick,
        "scenarios": names,
        "load_start": loadavg(),
        "machine": machine(),
        "source_start": source_fingerprint(),
    }
    bench = Bench(
        reps=reps,
        warmup=args.warmup,
        quick=args.quick,
        keep=args.keep,
        full_seed=args.full_seed,
        corpus_limit=args.corpus_limit or (30 if args.quick else None),
        corpus_jobs=args.corpus_jobs,
        corpus_ecosystems=tuple(e.strip() for e in args.corpus_ecosystems.split(",") if e.strip()),
        corpus_budget=args.corpus_budget,
        corpus_resume=args.corpus_resume,
        corpus_records=tuple(args.corpus_records),
        corpus_retry_failed=args.corpus_retry_failed,
        results_dir=args.out,
    )
    log(f"scratch {bench.root}; scenarios {', '.join(names)}; {reps} reps + {args.warmup} warm-up")
    results: list[Scenario] = []
    try:
        for name in names:
            module = importlib.import_module(SCENARIOS[name])
            run: Callable[[Bench], Scenario] = module.run
            log(f"scenario {name}")
            t0 = time.monotonic()
            try:
                scenario = run(bench)
            except Exception as exc:  # one broken scenario must not cost the others' numbers
                log(f"scenario {name} failed: {exc}")
                traceback.print_exc()
                scenario = Scenario(name, SCENARIOS[name], error=f"{type(exc).__name__}: {exc}")
            scenario.seconds = time.monotonic() - t0
            results.append(scenario)
            log(f"scenario {name} done in {scenario.seconds:.0f} s")
        health = bench.shared.get("health", {})
        meta["jail"], meta["version"] = health.get("jail"), health.get("version")
    finally:
        bench.close()
    meta["leaked_processes"] = bench.leaked
    meta["load_end"] = loadavg()
    meta["source_end"] = source_fingerprint()
    if meta["source_end"] != meta["source_start"]:
        log("WARNING: src/ changed while the bench ran; the numbers mix code versions")
    meta["seconds"] = round(time.monotonic() - started, 1)
    paths = report.write(meta, results, partial, args.out)
    log(f"wrote {', '.join(str(p) for p in paths)} in {meta['seconds']:.0f} s")
    for scenario in results:
        for t in scenario.targets:
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t.passed]
            print(f"{verdict:4}  {t.name}: {t.measured} (goal: {t.goal})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
