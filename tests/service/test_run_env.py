"""Combining ecosystems' run environments: search paths joined in order, system PATH last, mounts once."""

from __future__ import annotations

from pathlib import Path

from cloche.ecosystems.base import ExecEnv
from cloche.jail.profile import Mount
from cloche.service.run_env import combine


def test_paths_join_with_system_directories_last_and_mounts_deduplicated() -> None:
    python = ExecEnv(
        (Mount("ro-bind", "/opt/cloche/env/python", Path("/e/py")),),
        {"PATH": "/opt/cloche/env/python/bin:/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": "/sandbox:/sandbox/src"},
    )
    node = ExecEnv(
        (Mount("ro-bind", "/node_modules", Path("/e/nm")),),
        {"PATH": "/node_modules/.bin:/usr/local/bin:/usr/bin:/bin", "NODE_ENV": "x"},
    )
    tools = ExecEnv((Mount("symlink", "/opt/t/python", Path("/usr/bin/python3")),), {"PATH": "/opt/t"})
    again = ExecEnv((Mount("ro-bind", "/node_modules", Path("/other")),), {"PYTHONPATH": "/sandbox/lib:/sandbox"})
    combined = combine([python, node, tools, again])
    assert combined.env["PATH"] == "/opt/cloche/env/python/bin:/node_modules/.bin:/opt/t:/usr/local/bin:/usr/bin:/bin"
    assert combined.env["PYTHONPATH"] == "/sandbox:/sandbox/src:/sandbox/lib"
    assert combined.env["NODE_ENV"] == "x"
    assert [m.dest for m in combined.mounts] == ["/opt/cloche/env/python", "/node_modules", "/opt/t/python"]
    assert combined.mounts[1].source == Path("/e/nm")


def test_nothing_to_combine() -> None:
    assert combine([]) == ExecEnv()
