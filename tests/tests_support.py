"""Helpers shared by tests that need to look at the host."""

from __future__ import annotations

from typing import Any

from conftest import pool_processes


def pool_processes_of(server: Any) -> list[int]:
    """Live processes of a test server's sandbox uid pool."""
    low, high = server.uid_range
    return pool_processes(low, high)
