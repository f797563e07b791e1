#!/usr/bin/env python3
"""Derive the npm popularity list that guards manifest-less Node installs (re-run to refresh).

A Node script without a package.json names packages only through its ``require``/``import``
specifiers. Language models invent such names and attackers register them ("slopsquatting"), so
cloche installs a scanned specifier only when something vouches for it. This list is the fast path:
the most downloaded npm packages, cut at ``--top`` and at a minimum of ``--min-downloads`` downloads a
month, are installed with no registry look-up. Other names are vouched for by registry facts at run
time (``ecosystems/node/vetting.py``: age, history, deprecation), or reported as unresolved.

Input is a TSV with a header and the columns name, version, downloads_a_month, summary (the
workplace's package list, or any export of the registry's download counts). Output:
``src/cloche/ecosystems/node/data/npm_popular.txt``, one name a line, ranked, after a comment
header that records the source, the date and the cut.

    python scripts/gen_npm_popular.py                       # from the default TSV, top 30000
    python scripts/gen_npm_popular.py --tsv npm.tsv --top 5000 --min-downloads 500000
    python scripts/gen_npm_popular.py --builtins           # also refresh node_builtins.json
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "cloche" / "ecosystems" / "node" / "data"
DEFAULT_TSV = Path("/work/.library/env/packages/npm.tsv")
# npm's own rule for new package names (lower case, URL-safe, optional @scope/).
VALID_NAME = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")


def ranked(tsv: Path, top: int, min_downloads: int) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = []
    with tsv.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader, None)  # header
        for row in reader:
            if len(row) < 3 or not row[2].isdigit():
                continue
            name, downloads = row[0].strip(), int(row[2])
            if downloads >= min_downloads and VALID_NAME.match(name):
                rows.append((name, downloads))
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows[:top]


def write_popular(rows: list[tuple[str, int]], tsv: Path, top: int, min_downloads: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    out = DATA / "npm_popular.txt"
    listed = dt.datetime.fromtimestamp(tsv.stat().st_mtime, dt.UTC).date().isoformat()
    header = (
        f"# derived {dt.date.today().isoformat()} from {tsv.name} (the npm package list with downloads_a_month, "
        f"dated {listed}) by scripts/gen_npm_popular.py: the top {top} npm packages by monthly downloads, "
        f"at least {min_downloads} a month\n"
    )
    out.write_text(header + "".join(f"{name}\n" for name, _ in rows), encoding="utf-8")
    return out


def write_builtins() -> Path:
    """Node's own module names (``require('module').builtinModules``) from the host's node."""
    node = shutil.which("node")
    if node is None:
        sys.exit("node is not on PATH; cannot list its built-in modules")
    script = "console.log(JSON.stringify({version: process.version, builtins: require('module').builtinModules}))"
    found = json.loads(subprocess.run([node, "-e", script], check=True, capture_output=True, text=True).stdout)
    out = DATA / "node_builtins.json"
    out.write_text(json.dumps({"node": found["version"], "builtins": sorted(found["builtins"])}, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tsv", type=Path, default=DEFAULT_TSV)
    parser.add_argument("--top", type=int, default=30_000)
    parser.add_argument("--min-downloads", type=int, default=20_000)
    parser.add_argument("--builtins", action="store_true", help="also regenerate node_builtins.json")
    args = parser.parse_args()
    rows = ranked(args.tsv, args.top, args.min_downloads)
    print(f"wrote {len(rows)} names to {write_popular(rows, args.tsv, args.top, args.min_downloads)}")
    if args.builtins:
        print(f"wrote {write_builtins()}")


if __name__ == "__main__":
    main()
