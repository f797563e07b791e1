#!/usr/bin/env python3
"""Derive cloche's Python import-name -> PyPI distribution map (re-run to refresh).

Writes two files under src/cloche/ecosystems/python/data/:

* ``top_pypi.txt``: the top N of the PyPI download ranking; the only distribution names that
  ``ImportMap.is_known_distribution`` vouches for.
* ``import_map.json``: import name -> the ranked distributions whose wheel really ships it.

Names come only from the file list of each project's wheel (its zip central directory, read with
HTTP range requests), never from the project's name: a manifest-less script must not make cloche
install whatever distribution happens to be called like its import, which is what slopsquatters
register.

    python scripts/gen_import_map.py                       # full refresh, top 5000
    python scripts/gen_import_map.py --top 50 --out-dir /tmp/m
    python scripts/gen_import_map.py --from-installed DIR  # offline seed from installed RECORDs
    python scripts/gen_import_map.py --from-wheels /opt/pypi/files [--from-installed DIR]
                                                           # offline, from a local wheel mirror

The offline modes only cover the ranked projects present locally; the rest land in ``skipped``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import random
import re
import struct
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "src" / "cloche" / "ecosystems" / "python" / "data"
DEFAULT_TSV = Path("/work/.library/env/packages/pypi.tsv")
DEFAULT_INDEX = "https://pypi.org/pypi"

TAIL_BYTES = 65536  # EOCD (22 bytes) + the longest possible zip comment (65535) nearly fits
# A server that ignores Range sends the whole wheel; accept that only for small files.
MAX_FULL_BODY = 32 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# Top-level names that wheels ship by packaging mistake; `import utils` in a script nearly always
# means a local file, so mapping it to whichever sloppy wheel ships one would install junk.
JUNK_NAMES = frozenset(
    {"test", "tests", "doc", "docs", "example", "examples", "benchmark", "benchmarks", "scripts",
     "tools", "utils", "util", "src", "lib", "build", "dist", "bin", "setup", "conftest",
     "__pycache__", "__init__", "__main__"}
)  # fmt: skip


# ---------------------------------------------------------------- ranking


def read_ranking(tsv: Path, top: int) -> list[str]:
    """The `top` best-ranked project names, best first (unranked rows are ignored)."""
    ranked: list[tuple[int, str]] = []
    with tsv.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            rank = (row.get("rank_among_15000_most_downloaded") or "").strip()
            if rank.isdigit():
                ranked.append((int(rank), row["name"]))
    ranked.sort()
    return [name for _, name in ranked[:top]]


def write_ranking(path: Path, names: Sequence[str], tsv: Path, today: str) -> None:
    lines = [f"# derived {today} from {tsv.name} (rank among the 15000 most downloaded PyPI projects)"]
    lines += [f"{i}\t{name}" for i, name in enumerate(names, 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- wheel choice


def _wheel_preference(filename: str) -> int | None:
    """Lower is better; None if not a parseable wheel."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    if any(t.abi == "none" and t.platform == "any" and t.interpreter.startswith("py3") for t in tags):
        return 0
    linux_x86 = any("manylinux" in t.platform and t.platform.endswith("x86_64") for t in tags)
    if linux_x86 and any(t.interpreter == "cp311" or t.abi == "abi3" for t in tags):
        return 1
    if any(t.platform == "any" for t in tags):
        return 2
    return 3 if linux_x86 else 4


def pick_wheel(files: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    best: tuple[int, str, dict[str, Any]] | None = None
    for f in files:
        if f.get("packagetype") != "bdist_wheel" or f.get("yanked"):
            continue
        pref = _wheel_preference(str(f.get("filename", "")))
        if pref is not None and (best is None or (pref, f["filename"]) < best[:2]):
            best = (pref, f["filename"], f)
    return best[2] if best else None


# ---------------------------------------------------------------- zip central directory

EOCD = struct.Struct("<IHHHHIIH")  # end of central directory record
ZIP64_LOCATOR = struct.Struct("<IIQI")
ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
CD_ENTRY = struct.Struct("<IHHHHHHIIIHHHHHII")


class ZipListingError(Exception):
    pass


@dataclass(frozen=True)
class CentralDirectory:
    offset: int
    size: int
    zip64_eocd_offset: int | None  # set when the real offset/size live in the Zip64 record


def find_central_directory(tail: bytes, tail_start: int) -> CentralDirectory:
    """Locate the central directory from the file's last bytes (`tail` starts at `tail_start`)."""
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0:
            raise ZipListingError("no end-of-central-directory record in the tail")
        if len(tail) - pos < EOCD.size:
            continue  # the signature inside the last bytes of a comment: too close to the end to be real
        fields = EOCD.unpack_from(tail, pos)
        # The signature bytes can occur inside the comment; the real record's comment ends the file.
        if pos + EOCD.size + fields[7] == len(tail):
            break
    _, _, _, _, _, cd_size, cd_offset, _ = fields
    loc = pos - ZIP64_LOCATOR.size
    if loc >= 0 and tail[loc : loc + 4] == b"PK\x06\x07":
        _, _, eocd64_offset, _ = ZIP64_LOCATOR.unpack_from(tail, loc)
        return CentralDirectory(cd_offset, cd_size, eocd64_offset)
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        raise ZipListingError("Zip64 sizes without a Zip64 locator")
    return CentralDirectory(cd_offset, cd_size, None)


def parse_zip64_eocd(record: bytes) -> tuple[int, int]:
    """(offset, size) of the central directory from a Zip64 end-of-central-directory record."""
    if len(record) < ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
        raise ZipListingError("bad Zip64 end-of-central-directory record")
    fields = ZIP64_EOCD.unpack_from(record)
    return fields[9], fields[8]


def central_directory_names(cd: bytes) -> list[str]:
    names: list[str] = []
    pos = 0
    while pos + CD_ENTRY.size <= len(cd) and cd[pos : pos + 4] == b"PK\x01\x02":
        fields = CD_ENTRY.unpack_from(cd, pos)
        flags, name_len, extra_len, comment_len = fields[3], fields[10], fields[11], fields[12]
        raw = cd[pos + CD_ENTRY.size : pos + CD_ENTRY.size + name_len]
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace"))
        pos += CD_ENTRY.size + name_len + extra_len + comment_len
    if not names:
        raise ZipListingError("empty or unreadable central directory")
    return names


# ---------------------------------------------------------------- import names from file paths


def _installed_path(path: str) -> str | None:
    """Where a wheel member lands relative to site-packages, or None if it is not importable."""
    top, _, rest = path.partition("/")
    if top.endswith(".dist-info"):
        return None
    if top.endswith(".data"):
        # purelib/platlib members are installed straight into site-packages like root members;
        # scripts, headers and data are not importable.
        scheme, _, inner = rest.partition("/")
        return inner if scheme in ("purelib", "platlib") and inner else None
    return path


def _module_stem(filename: str) -> str | None:
    """'foo' for foo.py / foo.cpython-311-x86_64-linux-gnu.so / foo.abi3.so / foo.pyd."""
    if filename.endswith(".py"):
        stem = filename[:-3]
    elif filename.endswith((".so", ".pyd")):
        stem, _, tag = filename.rpartition(".")[0].partition(".")
        # An untagged libfoo.so is a bundled shared library, not an extension module.
        if not tag and stem.startswith("lib"):
            return None
    else:
        return None
    return stem if stem.isidentifier() else None


def import_names(paths: Iterable[str]) -> set[str]:
    """Importable names a wheel provides: top-level packages and modules, and for namespace
    packages (no __init__) the dotted path down to the first regular package or module."""
    files: dict[tuple[str, ...], set[str]] = defaultdict(set)
    subdirs: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for raw in paths:
        path = _installed_path(raw.lstrip("/"))
        if path is None or path.endswith("/"):
            continue
        parts = tuple(path.split("/"))
        if any(not p.isidentifier() or p in JUNK_NAMES for p in parts[:-1]):
            continue  # inside e.g. foo.libs/, tests/ or ../ (RECORD): never importable as a name
        files[parts[:-1]].add(parts[-1])
        for i in range(len(parts) - 1):
            subdirs[parts[:i]].add(parts[i])

    found: set[str] = set()

    def visit(prefix: tuple[str, ...]) -> None:
        stems = {s for s in map(_module_stem, files.get(prefix, ())) if s}
        if prefix and "__init__" in stems:
            found.add(".".join(prefix))
            return
        found.update(".".join((*prefix, s)) for s in stems if s not in JUNK_NAMES)
        for sub in sorted(subdirs.get(prefix, ())):
            visit((*prefix, sub))

    visit(())
    return found


# ---------------------------------------------------------------- HTTP


class FetchError(Exception):
    pass


class Fetcher:
    """httpx over HTTP/1.1 with bounded concurrency and retry with jittered exponential backoff."""

    def __init__(self, concurrency: int, timeout: float, attempts: int = 5) -> None:
        self.client = httpx.AsyncClient(
            http2=False,
            timeout=timeout,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"User-Agent": "cloche-gen-import-map/1"},
        )
        self.attempts = attempts

    async def get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        last: str = "no attempt"
        for attempt in range(self.attempts):
            try:
                async with self.client.stream("GET", url, headers=headers) as resp:
                    if resp.status_code not in RETRY_STATUSES:
                        length = int(resp.headers.get("content-length") or 0)
                        if resp.status_code == 200 and headers and length > MAX_FULL_BODY:
                            raise FetchError(f"server ignored Range for a {length}-byte file")
                        await resp.aread()
                        return resp
                    last = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(min(30.0, 0.5 * 2**attempt) * (0.5 + random.random()))
        raise FetchError(f"{url}: gave up after {self.attempts} attempts ({last})")

    async def byte_range(self, url: str, spec: str) -> tuple[bytes, int]:
        """Body and the absolute offset it starts at, for a Range header value `spec`."""
        resp = await self.get(url, {"Range": spec})
        if resp.status_code == 200:
            return resp.content, 0
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("content-range", ""))
        if resp.status_code != 206 or not match:
            raise FetchError(f"{url}: range request answered HTTP {resp.status_code}")
        return resp.content, int(match.group(1))

    async def aclose(self) -> None:
        await self.client.aclose()


async def wheel_listing(fetcher: Fetcher, url: str) -> list[str]:
    tail, tail_start = await fetcher.byte_range(url, f"bytes=-{TAIL_BYTES}")

    async def read(offset: int, size: int) -> bytes:
        if tail_start <= offset and offset + size <= tail_start + len(tail):
            return tail[offset - tail_start : offset - tail_start + size]
        body, start = await fetcher.byte_range(url, f"bytes={offset}-{offset + size - 1}")
        return body[offset - start : offset - start + size]

    cd = find_central_directory(tail, tail_start)
    offset, size = cd.offset, cd.size
    if cd.zip64_eocd_offset is not None:
        offset, size = parse_zip64_eocd(await read(cd.zip64_eocd_offset, ZIP64_EOCD.size))
    return central_directory_names(await read(offset, size))


async def map_project(fetcher: Fetcher, index: str, name: str) -> set[str] | str:
    """The project's import names, or a reason why it was skipped."""
    try:
        resp = await fetcher.get(f"{index}/{name}/json")
        if resp.status_code == 404:
            return "not found on the index"
        if resp.status_code != 200:
            return f"project JSON answered HTTP {resp.status_code}"
        files = resp.json().get("urls") or []
        if not files:
            return "current release has no files"
        wheel = pick_wheel(files)
        if wheel is None:
            return "no wheel in the current release (sdist only)"
        names = import_names(await wheel_listing(fetcher, wheel["url"]))
    except (FetchError, ZipListingError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return names or "wheel ships no importable names (stubs or data only)"


async def crawl(names: Sequence[str], index: str, concurrency: int, timeout: float) -> dict[str, set[str] | str]:
    fetcher = Fetcher(concurrency, timeout)
    results: dict[str, set[str] | str] = {}
    todo = iter(names)
    started = time.monotonic()

    async def worker() -> None:
        # Each worker handles one project at a time, so `concurrency` bounds open requests too.
        for name in todo:
            results[name] = await map_project(fetcher, index, name)
            done = len(results)
            if done % 250 == 0 or done == len(names):
                skipped = sum(isinstance(r, str) for r in results.values())
                log(f"[{time.monotonic() - started:5.0f}s] {done}/{len(names)} projects, {skipped} skipped")

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await fetcher.aclose()
    return results


# ---------------------------------------------------------------- local wheel mirror


def local_wheel_listing(path: Path) -> list[str]:
    """The crawler's central-directory reading, fed from a local file instead of HTTP ranges."""
    with path.open("rb") as fh:
        tail_start = max(0, fh.seek(0, os.SEEK_END) - TAIL_BYTES)
        fh.seek(tail_start)
        tail = fh.read()

        def read(offset: int, size: int) -> bytes:
            if tail_start <= offset and offset + size <= tail_start + len(tail):
                return tail[offset - tail_start : offset - tail_start + size]
            fh.seek(offset)
            body = fh.read(size)
            if len(body) != size:
                raise ZipListingError(f"central directory runs past the end of {path.name}")
            return body

        cd = find_central_directory(tail, tail_start)
        offset, size = cd.offset, cd.size
        if cd.zip64_eocd_offset is not None:
            offset, size = parse_zip64_eocd(read(cd.zip64_eocd_offset, ZIP64_EOCD.size))
        return central_directory_names(read(offset, size))


def index_local_wheels(dirs: Sequence[Path]) -> dict[NormalizedName, list[tuple[Version, Path]]]:
    """Every parseable *.whl under `dirs` (recursively), by project; a file name already seen in
    an earlier dir is the same wheel and is ignored."""
    wheels: dict[NormalizedName, list[tuple[Version, Path]]] = defaultdict(list)
    seen: set[str] = set()
    for root in dirs:
        for path in sorted(root.rglob("*.whl")):
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except (InvalidWheelFilename, ValueError):
                continue
            if path.name not in seen and path.is_file():
                seen.add(path.name)
                wheels[name].append((version, path))
    return dict(wheels)


def pick_local_wheel(candidates: Sequence[tuple[Version, Path]]) -> Path | None:
    """The newest release's best wheel, with the crawler's tag order (`pick_wheel`). Pre-releases
    count only when nothing else is there, as PyPI's current release is the newest final one."""
    final = [c for c in candidates if not c[0].is_prerelease] or list(candidates)
    if not final:
        return None
    newest = max(version for version, _ in final)
    files = [
        {"filename": path.name, "packagetype": "bdist_wheel", "path": path}
        for version, path in final
        if version == newest
    ]
    chosen = pick_wheel(files)
    return chosen["path"] if chosen else None


def from_wheels(dirs: Sequence[Path], names: Sequence[str]) -> dict[str, set[str] | str]:
    """Offline: the crawler's derivation over the newest local wheel of each ranked project."""
    local = index_local_wheels(dirs)
    results: dict[str, set[str] | str] = {}
    for name in names:
        path = pick_local_wheel(local.get(canonicalize_name(name), []))
        if path is None:
            results[name] = "no local wheel"
            continue
        try:
            provided = import_names(local_wheel_listing(path))
        except (OSError, ZipListingError) as exc:
            results[name] = f"{path.name}: {type(exc).__name__}: {exc}"
            continue
        results[name] = provided or "wheel ships no importable names (stubs or data only)"
    return results


def merge_results(
    preferred: dict[str, set[str] | str], fallback: dict[str, set[str] | str], names: Sequence[str]
) -> dict[str, set[str] | str]:
    """Per project, `preferred` wins unless it only has a skip reason and `fallback` has names."""
    merged: dict[str, set[str] | str] = {}
    for name in names:
        first, second = preferred.get(name), fallback.get(name)
        if isinstance(first, set) or (first is not None and not isinstance(second, set)):
            merged[name] = first
        elif second is not None:
            merged[name] = second
    return merged


def from_installed(dirs: Sequence[str], names: Sequence[str]) -> dict[str, set[str] | str]:
    """Offline seed: the same derivation over RECORD of ranked distributions installed in `dirs`."""
    wanted = {canonicalize_name(n): n for n in names}
    results: dict[str, set[str] | str] = {}
    for dist in metadata.distributions(path=list(dirs)):
        name = wanted.get(canonicalize_name(dist.metadata["Name"] or ""))
        if name is None or name in results:
            continue
        record = dist.read_text("RECORD")
        if record is None:
            results[name] = "installed copy has no RECORD"
            continue
        paths = [row[0] for row in csv.reader(record.splitlines()) if row]
        results[name] = import_names(paths) or "ships no importable names (stubs or data only)"
    return results


# ---------------------------------------------------------------- output


def build_modules(
    results: dict[str, set[str] | str], ranking: Sequence[str], namespace_roots: bool
) -> dict[str, list[str]]:
    modules: dict[str, list[str]] = defaultdict(list)
    for dist in ranking:  # in rank order, so every provider list comes out best-ranked first
        provided = results.get(dist)
        if isinstance(provided, set):
            for mod in provided:
                modules[mod].append(dist)
    if not namespace_roots:
        return dict(modules)
    # `from ruamel import yaml` asks for the namespace root: vouch for it only when every known
    # module under it comes from a single distribution. A partial map cannot know that.
    under: dict[str, set[str]] = defaultdict(set)
    for mod, dists in modules.items():
        parts = mod.split(".")
        for i in range(1, len(parts)):
            under[".".join(parts[:i])].update(dists)
    for prefix, owners in under.items():
        if prefix not in modules and len(owners) == 1:
            modules[prefix] = sorted(owners)
    return dict(modules)


def write_map(path: Path, header: dict[str, Any], modules: dict[str, list[str]], skipped: dict[str, str]) -> None:
    """Sorted-key JSON with one module per line so refreshes diff readably."""

    def block(obj: dict[str, Any]) -> str:
        rows = [f"{json.dumps(k)}: {json.dumps(obj[k], separators=(',', ':'))}" for k in sorted(obj)]
        return "{\n" + ",\n".join(rows) + "\n}" if rows else "{}"

    doc: dict[str, Any] = {**header, "modules": modules, "skipped": skipped}
    parts = []
    for key in sorted(doc):
        value = block(doc[key]) if isinstance(doc[key], dict) else json.dumps(doc[key])
        parts.append(f"{json.dumps(key)}: {value}")
    text = "{" + ",\n".join(parts) + "}\n"
    assert json.loads(text) == doc  # the hand-rolled layout must stay valid JSON
    path.write_text(text, encoding="utf-8")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def report_collisions(modules: dict[str, list[str]], limit: int = 60) -> None:
    """The names a person should review for overrides.toml: several wheels ship them."""
    shared = sorted((k for k, v in modules.items() if len(v) > 1), key=lambda k: (-len(modules[k]), k))
    log(f"{len(shared)} import names have several providers; most contested first:")
    for key in shared[:limit]:
        log(f"  {key}: {', '.join(modules[key][:6])}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=5000, help="how many ranked projects (default 5000)")
    ap.add_argument("--tsv", type=Path, default=DEFAULT_TSV, help="PyPI ranking table")
    ap.add_argument("--out-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--index", default=DEFAULT_INDEX, help="JSON API base (PyPI or a mirror)")
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    ap.add_argument("--only", help="comma-separated subset of the ranked names (smoke tests)")
    ap.add_argument("--from-installed", nargs="+", metavar="SITE_DIR", help="offline seed mode")
    ap.add_argument(
        "--from-wheels",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="offline mode over local *.whl files (searched recursively); with --from-installed, local wheels win",
    )
    args = ap.parse_args(argv)
    if args.only and args.out_dir.resolve() == DATA_DIR:
        ap.error("--only writes a partial map; give --out-dir so the shipped one is not replaced")

    today = dt.date.today().isoformat()
    ranking = read_ranking(args.tsv, args.top)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_ranking(args.out_dir / "top_pypi.txt", ranking, args.tsv, today)
    todo = ranking
    if args.only:
        subset = {canonicalize_name(n) for n in args.only.split(",")}
        todo = [n for n in ranking if canonicalize_name(n) in subset]

    started = time.monotonic()
    offline = bool(args.from_installed or args.from_wheels)
    if offline:
        results: dict[str, set[str] | str] = {}
        sources: list[str] = []
        if args.from_wheels:
            results = from_wheels(args.from_wheels, todo)
            wheel_mapped = sum(isinstance(r, set) for r in results.values())
            sources.append(
                f"file lists of the newest local wheel per project in {', '.join(map(str, args.from_wheels))}"
                f" ({wheel_mapped} projects)"
            )
        if args.from_installed:
            installed = from_installed(args.from_installed, todo)
            used = sum(isinstance(r, set) and not isinstance(results.get(n), set) for n, r in installed.items())
            results = merge_results(results, installed, todo)
            sources.append(
                f"RECORD files of wheels installed in {', '.join(args.from_installed)} ({used} projects"
                + (" not covered by local wheels)" if args.from_wheels else ")")
            )
        coverage = "ranked projects present locally" if args.from_wheels else "ranked projects installed"
        source = " + ".join(sources) + f" (partial: only the {coverage})"
    else:
        results = asyncio.run(crawl(todo, args.index.rstrip("/"), args.concurrency, args.timeout))
        source = f"file lists of current-release wheels from {args.index} for the ranked projects"
    elapsed = time.monotonic() - started

    # A partial map cannot tell whether a namespace root has a single owner.
    modules = build_modules(results, ranking, namespace_roots=not offline)
    skipped = {k: v for k, v in results.items() if isinstance(v, str)}
    header = {
        "generated": today,
        "source": f"{source}; ranking: top {len(ranking)} of {args.tsv.name}",
        "projects": len(results),
        "mapped": len(results) - len(skipped),
    }
    write_map(args.out_dir / "import_map.json", header, modules, skipped)
    report_collisions(modules)
    log(f"done in {elapsed:.0f}s: {header['mapped']} mapped, {len(skipped)} skipped, {len(modules)} names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
