"""``python -m bench.readme_table [RESULTS.json]``: the README's warm-execution and hello-world rows, from one run.

Reads the JSON a ``python -m bench --only exec,headline`` (or a full ``make bench``) wrote (default: the newest in
bench/results) and prints the rows of the README table for each goal of warm execution beside its baseline,
medians with p95, so the table is copied from one run rather than assembled by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report import RESULTS

# (row, scenario, cloche variant, baseline variant, baseline label, goal: ("x", ratio) or ("ms", difference))
ROWS: tuple[tuple[str, str, str, str, str, tuple[str, float]], ...] = (
    (
        "pandas + numpy, later exec, warm interpreter",
        "headline",
        "cloche later, warm interpreter",
        "bare later, beside the warm and cold execs",
        "bare interpreter, packages present",
        ("x", 0.5),
    ),
    (
        "pandas + numpy, later exec started cold",
        "headline",
        "cloche later, without the warm interpreter",
        "bare later, beside the warm and cold execs",
        "the same bare runs",
        ("x", 1.1),
    ),
    ("hello world `.py`, warm", "exec", "py cloche", "py bare", "bare `python3`", ("ms", 10.0)),
    ("hello world `.py`, warm (`egress: []`)", "exec", "py cloche egress=[]", "py bare", "the same", ("ms", 10.0)),
    ("hello world `.py` started cold", "exec", "py cloche, started cold", "py bare", "the same", ("ms", 10.0)),
    ("hello world `.js`", "exec", "js cloche", "js bare", "bare `node`", ("ms", 15.0)),
    ("hello world `.js` (`egress: []`)", "exec", "js cloche egress=[]", "js bare", "the same", ("ms", 15.0)),
)


def _stat(doc: dict[str, Any], scenario: str, variant: str) -> tuple[float, float] | None:
    found = doc["scenarios"].get(scenario, {}).get("series", {}).get(variant, {}).get("wall_ms")
    if not found or not found.get("n"):
        return None
    return float(found["median"]), float(found["p95"])


def rows(doc: dict[str, Any]) -> list[str]:
    out = ["| Scenario | cloche | Baseline | Result |", "|---|---|---|---|"]
    for name, scenario, variant, base, label, (kind, goal) in ROWS:
        mine, bare = _stat(doc, scenario, variant), _stat(doc, scenario, base)
        if mine is None or bare is None:
            out.append(f"| {name} | not measured | | |")
            continue
        (ms, p95), (bare_ms, bare_p95) = mine, bare
        if kind == "x":
            value, held = f"{ms / bare_ms:.2f}x", ms <= goal * bare_ms
            result = f"**{value}** (goal {goal}x)" if held else f"{value} (goal {goal}x)"
        else:
            value, held = f"{ms - bare_ms:+.1f} ms, {ms / bare_ms:.2f}x", ms - bare_ms <= goal
            result = f"**{value}** (goal +{goal:.0f} ms)" if held else f"{value} (goal +{goal:.0f} ms)"
        out.append(
            f"| {name} | {ms:.0f} ms (p95 {p95:.0f}) | {label}: {bare_ms:.0f} ms (p95 {bare_p95:.0f}) | {result} |"
        )
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else max(RESULTS.glob("*.json"), key=lambda p: p.stat().st_mtime)
    doc = json.loads(path.read_text())
    meta = doc["meta"]
    print(f"<!-- {path.name}: {meta.get('command')}, load {meta.get('load_start')} -> {meta.get('load_end')} -->")
    print("\n".join(rows(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
