"""GET /metrics: Prometheus text from the app's own registry, moved by real execs and installs."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import ServerProcess


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_exec_moves_counters(server: ServerProcess) -> None:
    before = scrape(server)
    with server.client() as client, client.create(language="python") as box:
        box.write("main.py", "print('hi')\n")
        assert box.exec(filename="main.py").status == "succeeded"
        assert box.exec(command="exit 3").status == "failed"
        during = scrape(server)
    after = scrape(server)
    ok = ("cloche_execs_total", {"language": "python", "status": "succeeded"})
    failed = ("cloche_execs_total", {"language": "python", "status": "failed"})
    assert value(after, ok[0], **ok[1]) == value(before, ok[0], **ok[1]) + 1
    assert value(after, failed[0], **failed[1]) == value(before, failed[0], **failed[1]) + 1
    assert value(after, "cloche_exec_duration_seconds_count") == value(before, "cloche_exec_duration_seconds_count") + 2
    assert value(after, "cloche_exec_duration_seconds_sum") > value(before, "cloche_exec_duration_seconds_sum")
    assert value(during, "cloche_active_sandboxes") == value(after, "cloche_active_sandboxes") + 1
    for name in ("cloche_jail_failures_total", "cloche_egress_denials_total", "cloche_env_store_hits_total"):
        assert (name, ()) in after  # every series is exported from the start


def test_installs_move_store_metrics(offline_server: ServerProcess) -> None:
    before = scrape(offline_server)
    with offline_server.client() as client:
        for _ in range(2):  # the second sandbox finds the same lock already built
            with client.create() as box:
                box.write("requirements.txt", "attrs==23.2.0\n")
                box.write("main.py", "import attr\nprint(attr.VERSION)\n")
                assert box.exec(filename="main.py").stdout == "attrs\n"
                assert box.exec(filename="main.py").status == "succeeded"  # fast path: a hit, no install
    after = scrape(offline_server)
    moved = {
        name: value(after, name) - value(before, name)
        for name in (
            "cloche_env_store_misses_total",
            "cloche_env_store_hits_total",
            "cloche_install_duration_seconds_count",
        )
    }
    # Four lookups; the very first may hit too when an earlier test built the same lock.
    assert moved["cloche_env_store_misses_total"] + moved["cloche_env_store_hits_total"] == 4
    assert moved["cloche_env_store_hits_total"] >= 3
    assert moved["cloche_install_duration_seconds_count"] == 2
    assert value(after, "cloche_env_store_environments") >= 1
    assert value(after, "cloche_env_store_bytes") > 0
