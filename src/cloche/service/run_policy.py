"""What every jailed run of a sandbox gets, whether an exec or a context's kernel: its limits (asked, clamped to
the server's maxima) and its egress policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloche.jail.egress_policy import EgressPolicy
from cloche.jail.profile import ResourceLimits
from cloche.service.sandboxes import SandboxService
from cloche.service.secrets import Held
from cloche.settings import Settings
from cloche.store.metadata import SandboxRow

MIB = 1024 * 1024


def limits(settings: Settings, asked: Mapping[str, Any]) -> ResourceLimits:
    """``asked``: the sandbox's limits with a request's over them (stored ``Limits`` field names)."""
    return ResourceLimits(
        memory_bytes=min(asked.get("memory_mb") or settings.default_memory_mb, settings.max_memory_mb) * MIB,
        pids=min(asked.get("pids") or settings.default_pids, settings.max_pids),
        cpu_cores=min(asked.get("cpu_cores") or settings.default_cpu_cores, settings.max_cpu_cores),
        file_size_bytes=settings.max_file_mb * MIB,
        open_files=settings.open_files,
    )


def egress(sandboxes: SandboxService, row: SandboxRow, held: Held) -> EgressPolicy:
    # Under the server default (no "egress" at create) the proxy runs even with nothing allowed, so what
    # the code tried is refused with a 403 and listed in egress_denied; an explicit [] means no network.
    # The run's secrets add the hosts they are meant for.
    allow = dict.fromkeys([*sandboxes.egress_hosts(row), *held.hosts])
    return EgressPolicy(tuple(allow), report_refusals=row.egress is None)
