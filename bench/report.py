"""Results: one JSON document with every sample, and a Markdown page with medians, p95, ratios and targets."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness import Scenario, Target, summary

RESULTS = Path(__file__).resolve().parent / "results"


def _clean(value: Any) -> Any:
    """NaN is not JSON: it becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def to_json(meta: dict[str, Any], scenarios: list[Scenario]) -> dict[str, Any]:
    out: dict[str, Any] = {"meta": meta, "targets": [], "scenarios": {}}
    for sc in scenarios:
        out["targets"] += [{"scenario": sc.name, **asdict(t)} for t in sc.targets]
        out["scenarios"][sc.name] = {
            "title": sc.title,
            "seconds": round(sc.seconds, 1),
            "error": sc.error,
            "series": {
                variant: {metric: summary(values) for metric, values in metrics.items()}
                for variant, metrics in sc.samples.items()
            },
            "ratios": sc.ratios,
            "notes": sc.notes,
            "extra": sc.extra,
        }
    cleaned: dict[str, Any] = _clean(out)
    return cleaned


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "MiB":
        return f"{value / 1048576:.1f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(target: Target) -> str:
    return {True: "PASS", False: "**FAIL**", None: "n/a"}[target.passed]


def _bytes(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def to_markdown(meta: dict[str, Any], scenarios: list[Scenario]) -> str:
    m = meta["machine"]
    lines = [
        f"# cloche benchmarks: {meta['date']}",
        "",
        f"`{meta['command'].strip()}` (`make bench`): {meta['reps']} measured repetitions after {meta['warmup']} "
        "warm-up, baselines interleaved with cloche (A, B, C, A, B, C, ...). Times are wall clock in milliseconds; "
        f"quote medians and ratios, this machine is shared and noisy. Total run time: {meta['seconds']:.0f} s.",
        "",
        "## Targets",
        "",
        "| Target | Goal | Measured (medians) | Result |",
        "|---|---|---|---|",
    ]
    for sc in scenarios:
        for t in sc.targets:
            lines.append(f"| {t.name} | {t.goal} | {t.measured} | {_verdict(t)} |")
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), {m['virtualization']}",
        f"- Memory: {_bytes(m['memory_bytes'])}; kernel {m['kernel']}",
        f"- Load average (1, 5, 15 min) at start {meta['load_start']}, at end {meta['load_end']}",
        f"- Python in the jail and for baselines {m['python_jail']} ({m['pip']}); harness and server Python "
        f"{m['python_harness']}; {m['uv']}; node {m['node']}, npm {m['npm']}; jail {meta.get('jail', 'n/a')}",
        f"- cloche {meta.get('version', '?')} at commit {m['git_commit']}"
        + (" (with uncommitted changes)" if m["git_dirty"] else "")
        + f"; src/ fingerprint {meta.get('source_start')}",
        "",
    ]
    if meta.get("source_end") != meta.get("source_start"):
        lines[-1:-1] = [
            f"- **Warning**: src/ changed during the run (fingerprint {meta.get('source_start')} -> "
            f"{meta.get('source_end')}): servers started at different times ran different code.",
        ]
    if meta.get("leaked_processes"):
        lines[-1:-1] = [f"- **Warning**: processes left behind and killed: {meta['leaked_processes']}"]
    for sc in scenarios:
        lines += [f"## {sc.name}: {sc.title}", ""]
        if sc.error:
            lines += [f"**Not available**: {sc.error}", ""]
        if sc.samples:
            lines += ["| Variant | Metric | n | median | p95 | min | max |", "|---|---|---|---|---|---|---|"]
            for variant, metrics in sc.samples.items():
                for metric, values in metrics.items():
                    s = summary(values)
                    if not s["n"]:
                        continue
                    unit = "MiB" if metric.endswith("bytes") else ""
                    label = metric.replace("_bytes", " (MiB)")
                    cells = [_num(s[k], unit) for k in ("median", "p95", "min", "max")]
                    lines.append(f"| {variant} | {label} | {s['n']} | " + " | ".join(cells) + " |")
            lines.append("")
        if sc.ratios:
            lines += ["| Ratio / difference (of medians) | Value |", "|---|---|"]
            lines += [f"| {name} | {_num(value)} |" for name, value in sc.ratios.items()]
            lines.append("")
        lines += [f"- {note}" for note in sc.notes]
        lines += [f"- Scenario time: {sc.seconds:.0f} s", ""]
    return "\n".join(lines).rstrip() + "\n"


def write(meta: dict[str, Any], scenarios: list[Scenario], partial: bool, out_dir: Path = RESULTS) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['date']}-partial" if partial else meta["date"]
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / ("partial.md" if partial else "latest.md")
    json_path.write_text(json.dumps(to_json(meta, scenarios), indent=2, sort_keys=False) + "\n")
    md_path.write_text(to_markdown(meta, scenarios))
    return [json_path, md_path]
