"""Start-up check: prove the jail works on this host, or refuse to start and say how to fix it."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cloche.errors import JailUnavailable
from cloche.jail.profile import JailProfile, RunSpec
from cloche.jail.runner import Runner
from cloche.paths import DataPaths
from cloche.settings import Settings


def _traversable_by_others(path: Path) -> Path | None:
    """The first ancestor a non-root uid cannot traverse, if any."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            return parent
    return None


async def check(runner: Runner, paths: DataPaths, settings: Settings, tools: Mapping[str, Path], bwrap: Path) -> None:
    if os.geteuid() != 0:
        raise JailUnavailable(
            "cloche must run as root: each sandbox runs under its own host uid, which needs root to assign"
        )
    for needed in (paths.workspaces, bwrap, *tools.values()):
        blocked = _traversable_by_others(needed)
        if blocked is not None:
            raise JailUnavailable(
                f"{blocked} is not traversable by sandbox uids, so the jail cannot reach {needed}; "
                f"run 'chmod o+x {blocked}' or choose another --data-dir"
            )
    probe = JailProfile(name="exec", host_uid=settings.uid_base + settings.uid_count - 1)
    try:
        result = await runner.run(RunSpec(argv=("/bin/true",), timeout_seconds=20), probe)
    except JailUnavailable:
        raise
    except Exception as exc:  # any failure here means no run could be jailed
        raise JailUnavailable(f"the jail self-test could not run: {exc}") from exc
    if result.status != "succeeded":
        raise JailUnavailable(
            "the jail self-test failed (bubblewrap could not create its namespaces): "
            f"{result.output.strip() or result.error}. Check that unprivileged user namespaces are enabled "
            "(sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0) and that no "
            "AppArmor/SELinux policy blocks bwrap."
        )
    # A tier the server uses by default (for sandboxes or for install jails) must work before the first request.
    for isolation in dict.fromkeys((settings.isolation, settings.install_isolation)):
        reason = await runner.tier(isolation).unavailable()
        if reason is not None:
            raise JailUnavailable(
                f"CLOCHE_ISOLATION/CLOCHE_INSTALL_ISOLATION name {isolation!r}, which cannot run here: {reason}"
            )
