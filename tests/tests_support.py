"""Helpers shared by tests that need to look at the host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloche.api.state import cgroup_parent
from cloche.jail.cgroups import Cgroups
from conftest import pool_processes


def pool_processes_of(server: Any) -> list[int]:
    """Live processes of a test server's sandbox uid pool."""
    low, high = server.uid_range
    return pool_processes(low, high)


def leftover_cgroups(server: Any) -> list[Path]:
    """Run cgroups a test server left behind under its own parent."""
    return Cgroups.detect(cgroup_parent(server.data_dir.resolve())).leftovers()
