"""Prometheus metrics: every series cloche exports, defined once, in a registry of the app's own.

A registry per ``Metrics`` (not the process-global one) keeps servers and tests in one process apart. The
service layer records through the small methods below; gauges about stored state are computed when scraped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cloche.store.envstore import EnvironmentStore

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

EXEC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
INSTALL_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
STORE_SIZE_TTL_SECONDS = 60.0  # walking every environment is not free; a scrape sees a size at most this old


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.execs = Counter(
            "cloche_execs", "Execs finished, by sandbox language and run status.", ["language", "status"], registry=r
        )
        self.exec_duration = Histogram(
            "cloche_exec_duration_seconds", "Wall time of finished execs.", buckets=EXEC_BUCKETS, registry=r
        )
        self.install_duration = Histogram(
            "cloche_install_duration_seconds",
            "Time spent resolving and building dependency environments (execs whose needs changed).",
            buckets=INSTALL_BUCKETS,
            registry=r,
        )
        self.env_hits = Counter(
            "cloche_env_store_hits", "Execs whose dependency environment was already in the store.", registry=r
        )
        self.env_misses = Counter(
            "cloche_env_store_misses", "Execs that had to build a new dependency environment.", registry=r
        )
        self.egress_denials = Counter(
            "cloche_egress_denials", "Hosts refused to sandboxed code (counted once per host per run).", registry=r
        )
        self.jail_failures = Counter(
            "cloche_jail_failures", "Execs cloche could not start or finish (jail or host errors).", registry=r
        )
        self.env_bytes = Gauge("cloche_env_store_bytes", "Bytes held by stored environments.", registry=r)
        self.env_count = Gauge("cloche_env_store_environments", "Environments in the store.", registry=r)
        self.active_sandboxes = Gauge("cloche_active_sandboxes", "Sandboxes that exist (not deleted).", registry=r)
        self._size_lock = threading.Lock()
        self._size: tuple[float, int] | None = None  # (when computed, bytes)

    def watch(self, envs: EnvironmentStore, count_sandboxes: Callable[[], int]) -> None:
        """Compute the stored-state gauges from ``envs`` and ``count_sandboxes`` at scrape time."""
        self.env_count.set_function(lambda: len(envs.keys()))
        self.env_bytes.set_function(lambda: self._store_bytes(envs))
        self.active_sandboxes.set_function(count_sandboxes)

    def _store_bytes(self, envs: EnvironmentStore) -> float:
        with self._size_lock:
            now = time.monotonic()
            if self._size is None or now - self._size[0] > STORE_SIZE_TTL_SECONDS:
                total, stored = 0, envs.keys()
                for key in stored:
                    try:
                        total += envs.size_bytes(key)
                    except OSError:  # pruned while we walked it
                        continue
                self._size = (now, total)
            return float(self._size[1])

    def store_changed(self) -> None:
        """An environment was added or removed: the next scrape recomputes the store's size."""
        with self._size_lock:
            self._size = None

    # recording hooks (service layer)

    def exec_finished(self, language: str | None, status: str, duration_seconds: float, denied_hosts: int) -> None:
        self.execs.labels(language=language or "none", status=status).inc()
        self.exec_duration.observe(duration_seconds)
        if denied_hosts:
            self.egress_denials.inc(denied_hosts)

    def environment_lookup(self, hit: bool) -> None:
        (self.env_hits if hit else self.env_misses).inc()

    def install_finished(self, duration_seconds: float) -> None:
        self.install_duration.observe(duration_seconds)

    def jail_failed(self) -> None:
        self.jail_failures.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
