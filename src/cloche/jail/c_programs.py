"""Small C programs cloche compiles at start-up (the in-jail egress launcher, the host spawn helper).

Each is built once per source version into ``<data>/jail/bin`` (root-owned, 0755, so sandbox uids may run what
they need); where no compiler works the caller falls back to its slower Python way and says so.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("cloche.jail")


def compile_once(source: Path, bin_dir: Path, name: str, flags: Sequence[str] = ()) -> Path | None:
    """``bin_dir/<name>-<digest of source>``, compiled (with ``flags``, e.g. for a shared library) if missing;
    None when no compiler works."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = bin_dir / f"{name}-{digest}"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler: %s falls back to its slower Python form", name)
        return None
    bin_dir.mkdir(parents=True, exist_ok=True)
    bin_dir.chmod(0o755)
    partial = bin_dir / f".{target.name}.tmp"
    built = subprocess.run(
        [compiler, "-O2", *flags, "-o", str(partial), str(source)], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        log.warning("could not compile %s; using its Python form", name, extra={"stderr": built.stderr})
        return None
    partial.chmod(0o755)
    partial.rename(target)
    return target
