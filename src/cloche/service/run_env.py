"""One run's environment from several ecosystems' (a command may start Python and Node, and every run gets the
command tools): mounts side by side, search paths joined, the system's PATH directories last."""

from __future__ import annotations

from collections.abc import Sequence

from cloche.ecosystems.base import ExecEnv
from cloche.jail.environment import BASE_ENV
from cloche.jail.profile import Mount

SEARCH_PATHS = ("PATH", "PYTHONPATH", "CLASSPATH")  # colon-separated lists: joined, never overwritten
_SYSTEM_PATH = BASE_ENV["PATH"].split(":")


def combine(envs: Sequence[ExecEnv]) -> ExecEnv:
    """Earlier environments' search-path entries come first; for other variables the later one wins."""
    mounts: dict[str, Mount] = {}
    env: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for one in envs:
        for mount in one.mounts:
            mounts.setdefault(mount.dest, mount)
        for name, value in one.env.items():
            if name in SEARCH_PATHS:
                known = lists.setdefault(name, [])
                known += [p for p in value.split(":") if p and p not in known]
            else:
                env[name] = value
    for name, entries in lists.items():
        if name == "PATH":
            entries = [p for p in entries if p not in _SYSTEM_PATH] + _SYSTEM_PATH
        env[name] = ":".join(entries)
    return ExecEnv(mounts=tuple(mounts.values()), env=env, display=any(one.display for one in envs))
