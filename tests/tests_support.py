"""Helpers shared by tests that need to look at the host."""

from __future__ import annotations

import time
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


def run_command(api: Any, sid: str, command: str, default_timeout: float | None = None, **body: Any) -> dict[str, Any]:
    """Exec a shell command over HTTP and return the result JSON (any HTTP error fails the test)."""
    timeout = {"timeout_seconds": default_timeout} if default_timeout else {}
    response = api.post(f"/v1/sandboxes/{sid}/exec", json={"command": command, **timeout, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_clean(server: Any, api: Any, sid: str) -> None:
    """Nothing of the pool left running, no run cgroup left, the server healthy, the sandbox usable."""
    low, high = server.uid_range
    deadline = time.monotonic() + 5
    while (pool_processes(low, high) or leftover_cgroups(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool_processes(low, high) == []
    assert leftover_cgroups(server) == []
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    after = run_command(api, sid, "echo ok", default_timeout=30)
    assert (after["status"], after["stdout"]) == ("succeeded", "ok\n"), after
    assert pool_processes(low, high) == []
