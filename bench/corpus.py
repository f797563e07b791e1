"""Scenario ``corpus``: real manifest-less scripts, import-clean under cloche vs the usual by-hand baselines.

The corpora (``bench/corpus/python.json``, ``node.json``, built by ``scripts/gen_corpus.py``) hold the imports of real
public scripts written by others. For each entry, on a server of its own (private data dir, default settings):

- **cloche**: a new sandbox gets only the generated ``main.py`` (or ``main.js``/``main.mjs``) that performs exactly
  the entry's imports, and execs it: detection, the guard, install and run are cloche's, as a new user's would be.
- **Python baseline, pipreqs + uv**: ``pipreqs`` (its own shipped mapping and its PyPI look-up, run on the host: it
  only parses) writes ``requirements.txt`` for the same file; a new sandbox gets both files, so cloche's manifest
  path installs exactly those requirements with uv in the install jail and the check runs in the exec jail.
- **Node baseline, npm install of each specifier's package**: a ``package.json`` naming every bare specifier's
  package at ``latest``; installed by npm in the install jail, run in the exec jail.

Import-clean = the exec succeeded with exit code 0 and its output shows no ImportError / ModuleNotFoundError /
``Cannot find module`` / ``ERR_PACKAGE_PATH_NOT_EXPORTED``. Untrusted package code only ever runs in a jail.
Entries run a few at a time (``--corpus-jobs``) within a time budget (``--corpus-budget``); entries not reached are
reported as not measured. ``bench/results/corpus.md`` lists every failure by class.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.corpus_programs import Verdict, node_filename, node_program, python_program, verdict
from bench.corpus_report import (
    commits_of,
    current_commit,
    earlier_records,
    keep_others,
    stamp,
    summarize,
    write_markdown,
)
from bench.harness import UV, Bench, BenchError, Scenario, Server, Target, baseline_env, command, log
from cloche import Client

CORPUS = Path(__file__).resolve().parent / "corpus"
PIPREQS = "pipreqs==0.5.0"
# pipreqs's default JSON API host (pypi.python.org) is an old alias of pypi.org; ask the canonical host directly.
PIPREQS_PYPI = "https://pypi.org/pypi/"
GOALS = {"python": 97.0, "node": 95.0}
RUN_TIMEOUT_SECONDS = 120.0
# An install that takes longer than this (a source build, a giant wheel) is recorded as an error for that entry.
CLIENT_TIMEOUT_SECONDS = 480.0


def load(ecosystem: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{ecosystem}.json").read_text())
    return data


def round_robin(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry of each repository in turn, so a limit or an exhausted budget still samples every repository."""
    queues: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        queues.setdefault(entry["repo"], []).append(entry)
    ordered: list[dict[str, Any]] = []
    while any(queues.values()):
        for queue in queues.values():
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def pipreqs_requirements(program: str) -> list[str]:
    """pipreqs's answer for one file: its mapping, its PyPI look-up, no pins (what a user pastes into uv)."""
    with tempfile.TemporaryDirectory(prefix="corpus-pipreqs-") as tmp:
        folder = Path(tmp) / "src"
        folder.mkdir()
        (folder / "main.py").write_text(program)
        out = Path(tmp) / "requirements.txt"
        argv = [UV, "tool", "run", "--from", PIPREQS, "pipreqs", "--mode", "no-pin", "--pypi-server", PIPREQS_PYPI]
        argv += ["--savepath", str(out)]
        command([*argv, str(folder)], env=baseline_env(), timeout=300)
        return [line.strip() for line in out.read_text().splitlines() if line.strip() and not line.startswith("#")]


def npm_manifest(entry: dict[str, Any]) -> str:
    packages = sorted({i["package"] for i in entry["imports"] if i["kind"] == "package"})
    manifest = {
        "name": "corpus-entry",
        "version": "1.0.0",
        "private": True,
        "dependencies": dict.fromkeys(packages, "latest"),
    }
    return json.dumps(manifest, indent=2) + "\n"


def run_in_sandbox(client: Client, language: str, files: dict[str, str], entry_file: str) -> dict[str, Any]:
    """A new sandbox, the files, one exec; the result as plain data (or the error, as a status)."""
    try:
        box = client.create(language=language)
    except Exception as exc:  # the harness records the failure and goes on with the next entry
        return {"status": "error", "output": f"create: {type(exc).__name__}: {exc}"}
    try:
        for path, text in files.items():
            box.write(path, text)
        result: dict[str, Any] = box.exec(filename=entry_file, timeout_seconds=RUN_TIMEOUT_SECONDS).model_dump()
        return result
    except Exception as exc:
        return {"status": "error", "output": f"exec: {type(exc).__name__}: {exc}"}
    finally:
        try:
            box.delete()
        except Exception as exc:
            log(f"  corpus: could not delete sandbox: {exc}")


def measure_entry(client: Client, ecosystem: str, entry: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"id": entry["id"], "repo": entry["repo"], "path": entry["path"]}
    if ecosystem == "python":
        program, entry_file, language = python_program(entry), "main.py", "python"
        try:
            requirements = pipreqs_requirements(program)
            baseline_files: dict[str, str] | None = {
                "main.py": program,
                "requirements.txt": "".join(f"{r}\n" for r in requirements),
            }
        except BenchError as exc:
            requirements, baseline_files = [], None
            record["baseline_error"] = str(exc)[-500:]
        record["baseline_requirements"] = requirements
    else:
        program, entry_file, language = node_program(entry), node_filename(entry), "node"
        baseline_files = {entry_file: program, "package.json": npm_manifest(entry)}
    for variant, files in (("cloche", {entry_file: program}), ("baseline", baseline_files)):
        started = time.monotonic()
        if files is None:
            outcome = Verdict(False, "error", None, record.get("baseline_error", "")).as_dict()
        else:
            outcome = verdict(ecosystem, run_in_sandbox(client, language, files, entry_file)).as_dict()
        outcome["seconds"] = round(time.monotonic() - started, 1)
        record[variant] = outcome
    return record


def _mark(variant: str, outcome: dict[str, Any]) -> str:
    if outcome["clean"]:
        return f"{variant}=ok"
    return f"{variant}={outcome['failure']}" + (f"({outcome['module']})" if outcome["module"] else "")


def measure_corpus(
    server: Server,
    ecosystem: str,
    entries: list[dict[str, Any]],
    jobs: int,
    deadline: float,
    progress: Path,
    commit: str,
) -> list[dict[str, Any]]:
    records: list[dict[str, Any] | None] = [None] * len(entries)
    done = iter(range(1, len(entries) + 1))
    lock = threading.Lock()
    stop = threading.Event()  # set when the run is interrupted: pending entries are not started

    def one(index: int) -> None:
        entry = entries[index]
        if stop.is_set() or time.monotonic() > deadline:
            records[index] = {"id": entry["id"], "repo": entry["repo"], "path": entry["path"], "not_measured": True}
            return
        with Client(server.url, timeout=CLIENT_TIMEOUT_SECONDS) as client:
            record = {**measure_entry(client, ecosystem, entry), "commit": commit}
        records[index] = record
        with lock:
            n = next(done)
            with progress.open("a") as out:  # readable while the run goes on
                out.write(json.dumps({"ecosystem": ecosystem, **record}) + "\n")
        marks = " ".join(_mark(variant, record[variant]) for variant in ("cloche", "baseline"))
        log(f"  corpus {ecosystem} {n}/{len(entries)} {entry['id']}: {marks}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            list(pool.map(one, range(len(entries))))
        except BaseException:
            stop.set()
            raise
    return [r for r in records if r is not None]


def run(bench: Bench) -> Scenario:
    scenario = Scenario("corpus", "Real manifest-less scripts: import-clean rate, cloche vs by-hand baselines", __doc__)
    commit = current_commit()
    server = bench.start_server("corpus")
    corpora = {ecosystem: load(ecosystem) for ecosystem in bench.corpus_ecosystems}
    # --corpus-resume: only the entries no earlier run measured (or, with --corpus-retry-failed, measured clean);
    # the new records are merged with the earlier ones, which stand for any entry this run does not reach.
    source = bench.results_dir / "corpus.json"
    earlier = earlier_records(source, bench.corpus_records) if bench.corpus_resume else {}
    settled = earlier_records(source, bench.corpus_records, bench.corpus_retry_failed) if bench.corpus_resume else {}
    queues = {
        eco: round_robin([e for e in c["entries"] if e["id"] not in settled.get(eco, {})])[: bench.corpus_limit or None]
        for eco, c in corpora.items()
    }
    budget_end = time.monotonic() + bench.corpus_budget
    progress = bench.scratch("corpus") / "records.jsonl"
    log(f"corpus: each entry's record is appended to {progress} as it is measured")
    summaries: dict[str, dict[str, Any]] = {}
    try:
        for ecosystem, corpus in corpora.items():
            entries = queues[ecosystem]
            # Each corpus gets a share of what is left of the budget in proportion to its size, so an exhausted
            # budget still measures both.
            left = sum(len(queues[e]) for e in list(corpora)[list(corpora).index(ecosystem) :])
            deadline = time.monotonic() + (budget_end - time.monotonic()) * len(entries) / max(left, 1)
            log(f"corpus {ecosystem}: {len(entries)} entries, {bench.corpus_jobs} at a time")
            if bench.corpus_resume:
                log(f"corpus {ecosystem}: {len(settled.get(ecosystem, {}))} entries kept from earlier runs")
            fresh = measure_corpus(server, ecosystem, entries, bench.corpus_jobs, deadline, progress, commit)
            now = {r["id"]: r for r in fresh}
            merged = {**earlier.get(ecosystem, {}), **{i: r for i, r in now.items() if not r.get("not_measured")}}
            records = [
                merged.get(e["id"]) or now[e["id"]] for e in corpus["entries"] if e["id"] in merged or e["id"] in now
            ]
            summary = stamp(summarize(ecosystem, corpus, records), commits_of(records, commit))
            summaries[ecosystem] = summary
            scenario.extra[ecosystem] = {"summary": summary, "entries": records}
            baseline = "pipreqs + uv" if ecosystem == "python" else "npm install of each package"
            cloche_rate, baseline_rate, measured = summary["cloche_rate"], summary["baseline_rate"], summary["measured"]
            scenario.targets.append(
                Target(
                    f"{ecosystem} corpus: real manifest-less scripts import-clean",
                    f"at least {GOALS[ecosystem]:.0f}%",
                    f"cloche {cloche_rate:.1f}% vs {baseline} {baseline_rate:.1f}% ({measured} of "
                    f"{len(corpus['entries'])} scripts measured, {len(corpus['repositories'])} repositories); "
                    f"on the {summary['runnable']} runnable on Linux with Python 3: cloche "
                    f"{summary['cloche_runnable_rate']:.1f}% vs {summary['baseline_runnable_rate']:.1f}%",
                    cloche_rate >= GOALS[ecosystem] if measured else None,
                )
            )
            for variant in ("cloche", "baseline"):
                scenario.ratios[f"{ecosystem} {variant} import-clean (%)"] = summary[f"{variant}_rate"]
                scenario.ratios[f"{ecosystem} {variant} import-clean, runnable (%)"] = summary[
                    f"{variant}_runnable_rate"
                ]
        # Written before the server's data dir is removed: deleting a store of many environments can take minutes.
        records = {eco: scenario.extra[eco]["entries"] for eco in summaries}
        kept = keep_others(bench.results_dir / "corpus.json", records, {eco: load(eco) for eco in GOALS})
        for eco, (summary, entries) in kept.items():
            summaries[eco], records[eco] = summary, entries
            scenario.notes.append(f"{eco}: not run; its last results ({summary['measured_at']}) are kept on the page.")
        summaries = {eco: summaries[eco] for eco in GOALS if eco in summaries}
        records = {eco: records[eco] for eco in GOALS if eco in records}
        path = write_markdown(bench.results_dir / "corpus.md", summaries)
        document = json.dumps({"summaries": summaries, "records": records}, indent=1)
        (bench.results_dir / "corpus.json").write_text(document)
        scenario.notes.append(f"Failures by class, per script: {path.name} and corpus.json (beside this page).")
    finally:
        bench.stop_server(server)
    return scenario
