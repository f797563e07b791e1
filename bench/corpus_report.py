"""The corpus scenario's tallies and its page: rates per variant, failures grouped by class and module."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.corpus_programs import CANNOT_RUN_HERE, CLASSES

VARIANTS = {
    "python": {"cloche": "cloche", "baseline": "pipreqs + uv"},
    "node": {"cloche": "cloche", "baseline": "npm install of each package"},
}


def _rate(clean: int, measured: int) -> float:
    return round(100.0 * clean / measured, 1) if measured else 0.0


def failures_by_class(records: list[dict[str, Any]], variant: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        outcome = record.get(variant)
        if outcome and not outcome["clean"]:
            grouped[outcome["failure"]].append(
                {"id": record["id"], "module": outcome["module"], "detail": outcome["detail"]}
            )
    return dict(sorted(grouped.items(), key=lambda kv: -len(kv[1])))


def summarize(ecosystem: str, corpus: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r for r in records if not r.get("not_measured")]
    summary: dict[str, Any] = {
        "ecosystem": ecosystem,
        "entries": len(corpus["entries"]),
        "repositories": len(corpus["repositories"]),
        "measured": len(measured),
    }
    for variant in ("cloche", "baseline"):
        clean = sum(1 for r in measured if r[variant]["clean"])
        summary[f"{variant}_clean"] = clean
        summary[f"{variant}_rate"] = _rate(clean, len(measured))
        summary[f"{variant}_failures"] = failures_by_class(measured, variant)
    # Scripts no installer can make import on Linux with Python 3: cloche says an import's project runs only on another
    # operating system (or is a Python 2 module name), and the baseline fails on the same script. Left out of both
    # variants' runnable rate.
    elsewhere = [r for r in measured if r["cloche"]["failure"] in CANNOT_RUN_HERE and not r["baseline"]["clean"]]
    summary["cannot_run_here"] = [r["id"] for r in elsewhere]
    runnable = len(measured) - len(elsewhere)
    summary["runnable"] = runnable
    for variant in ("cloche", "baseline"):
        summary[f"{variant}_runnable_rate"] = _rate(summary[f"{variant}_clean"], runnable)
    summary["only_baseline_clean"] = [r["id"] for r in measured if r["baseline"]["clean"] and not r["cloche"]["clean"]]
    summary["only_cloche_clean"] = [r["id"] for r in measured if r["cloche"]["clean"] and not r["baseline"]["clean"]]
    return summary


def current_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, timeout=10, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def stamp(summary: dict[str, Any], commit: str) -> dict[str, Any]:
    """The summary marked with when and on which commit it was measured (it may outlive later runs of the other
    corpus: see ``keep_others``)."""
    return {**summary, "commit": commit, "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="minutes")}


def keep_others(
    path: Path, measured: dict[str, list[dict[str, Any]]], corpora: dict[str, dict[str, Any]]
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The corpora this run did not measure, from the last results (``corpus.json``): their records summarized again
    (so the page's format is today's), with the commit and time they were measured at. A run of one corpus thus
    leaves the other's last numbers on the page."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    kept: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for eco, records in document.get("records", {}).items():
        if eco in measured or eco not in corpora:
            continue
        earlier = document.get("summaries", {}).get(eco, {})
        summary = summarize(eco, corpora[eco], records)
        summary["commit"] = earlier.get("commit", "unknown")
        summary["measured_at"] = earlier.get("measured_at", "an earlier run")
        kept[eco] = (summary, records)
    return kept


def earlier_records(
    path: Path, extra: tuple[Path, ...] = (), retry_failed: bool = False
) -> dict[str, dict[str, dict[str, Any]]]:
    """The records measured by earlier runs, per corpus and entry id: ``corpus.json``'s, then those of the given
    progress files (``records.jsonl`` of an interrupted run, later lines winning). Entries reported as not measured
    (and with ``retry_failed``, those cloche failed on) are left out, so a resumed run measures exactly them."""
    found: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    with contextlib.suppress(OSError, ValueError):
        document = json.loads(path.read_text())
        for eco, records in document.get("records", {}).items():
            commit = document.get("summaries", {}).get(eco, {}).get("commit", "unknown")
            for record in records:
                if not record.get("not_measured"):
                    found[eco][record["id"]] = {"commit": commit, **record}
    for progress in extra:
        for line in progress.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                found[record.pop("ecosystem")][record["id"]] = record
    if retry_failed:
        return {eco: {i: r for i, r in got.items() if r["cloche"]["clean"]} for eco, got in found.items()}
    return dict(found)


def commits_of(records: list[dict[str, Any]], fallback: str) -> str:
    """The commit(s) the records were measured at, with how many each (a resumed run merges two or more)."""
    counts = Counter(r.get("commit", fallback) for r in records if not r.get("not_measured"))
    if len(counts) <= 1:
        return next(iter(counts), fallback)
    return " + ".join(f"{commit} ({n})" for commit, n in counts.items())


def markdown(summaries: dict[str, dict[str, Any]]) -> str:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="minutes")
    when = ", ".join(
        f"{s.get('commit', 'unknown')} ({eco}, measured {s.get('measured_at', now)})" for eco, s in summaries.items()
    )
    lines = [
        f"# Corpus: real manifest-less scripts, {now}",
        "",
        f"cloche at commit {when} (when the server started). Corpora: `bench/corpus/` (imports of public "
        "scripts, built by `scripts/gen_corpus.py`). Import-clean: the exec exits 0 with no import failure. Classes:",
        "",
        *[f"- `{name}`: {text}" for name, text in CLASSES.items()],
        "",
        "Runnable: the scripts measured, less those whose import cloche reports as running only on another operating "
        "system or as a Python 2 module name, and on which the baseline fails too (both variants' rates over the same "
        "scripts).",
        "",
        "| Corpus | Scripts measured | Repositories | cloche | Baseline | Baseline import-clean "
        "| Runnable scripts | cloche, runnable | Baseline, runnable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for eco, s in summaries.items():
        lines.append(
            f"| {eco} | {s['measured']} of {s['entries']} | {s['repositories']} | {s['cloche_rate']:.1f}% "
            f"({s['cloche_clean']}) | {VARIANTS[eco]['baseline']} | {s['baseline_rate']:.1f}% ({s['baseline_clean']}) "
            f"| {s['runnable']} | {s['cloche_runnable_rate']:.1f}% | {s['baseline_runnable_rate']:.1f}% |"
        )
    for eco, s in summaries.items():
        for variant, label in VARIANTS[eco].items():
            failures = s[f"{variant}_failures"]
            lines += ["", f"## {eco}: {label} failures ({sum(len(v) for v in failures.values())})", ""]
            for kind, items in failures.items():
                modules = Counter(i["module"] or "-" for i in items)
                top = ", ".join(f"`{m}` x{n}" if n > 1 else f"`{m}`" for m, n in modules.most_common())
                lines += [f"### {kind} ({len(items)}): {top}", ""]
                lines += [
                    f"- {i['id']}: {i['module'] or ''} {('- ' + i['detail']) if i['detail'] else ''}" for i in items
                ]
                lines.append("")
        lines += [
            f"Clean only with the baseline: {len(s['only_baseline_clean'])}; only with cloche: "
            f"{len(s['only_cloche_clean'])}.",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(path: Path, summaries: dict[str, dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(summaries))
    return path
