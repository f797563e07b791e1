"""Wire models of background processes: what the process routes return (requests are ``ExecRequest``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from cloche.models import ImportSuggestion, InstallReport, RunStatus, UnresolvedImport


class ProcessInfo(BaseModel):
    process_id: str | None = Field(
        description="Process id, 'rs_' followed by 24 hex digits; null when nothing was started (install_failed)."
    )
    status: RunStatus = Field(description="'running' while it lives, then how it ended (as a run's status).")
    command: str = Field(description="What it runs.")
    started_at: datetime | None
    finished_at: datetime | None = None
    exit_code: int | None = Field(None, description="Its exit code; null while running or when cloche stopped it.")
    error: str | None = Field(None, description="Why it ended, when cloche or a limit ended it.")
    lifetime_seconds: float = Field(description="Its lifetime cap: past it the process is stopped (timed_out).")
    ports: list[int] = Field(
        default_factory=list,
        description="TCP ports it listens on inside the sandbox, each at /v1/sandboxes/{id}/ports/{port}/.",
    )
    install: InstallReport | None = Field(None, description="Dependency step of its start (start answer only).")
    unlisted_imports: list[ImportSuggestion] = Field(default_factory=list)
    unresolved_imports: list[UnresolvedImport] = Field(default_factory=list)


class ProcessList(BaseModel):
    processes: list[ProcessInfo]


class ProcessOutput(BaseModel):
    offset: int = Field(description="Characters the process printed before this chunk.")
    stream: Literal["stdout", "stderr"]
    text: str


class ProcessLogs(BaseModel):
    status: RunStatus
    output: str = Field(description="The kept output from 'since' on, both streams in arrival order.")
    chunks: list[ProcessOutput]
    start: int = Field(description="Offset of the oldest output still kept (older output was dropped).")
    end: int = Field(description="Offset to ask 'since' next time to get only what is new.")
    dropped: bool = Field(description="Part of what was asked for is no longer kept.")
