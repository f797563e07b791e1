"""One code context as the server holds it (its kernel, its accumulated imports, its state flags) and its API view."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cloche.models_code import Context
from cloche.service.kernels import Kernel
from cloche.service.masking import Masker

SOURCE_DIR = ".cloche/contexts"


@dataclass
class CodeContext:
    id: str
    sandbox_id: str
    default: bool
    created_at: datetime
    last_used_at: datetime
    imports: list[str] = field(default_factory=list)
    source_written: bool = False
    kernel: Kernel | None = None
    started_once: bool = False
    starting: bool = False
    busy: bool = False
    ended: str | None = None  # why the last kernel ended, told by the next cell that starts one
    launching: asyncio.Task[None] | None = None  # the kernel starting in the background
    masker: Masker = field(default_factory=lambda: Masker(()))  # the kernel's secrets, masked in what it shows

    @property
    def source(self) -> str:
        return f"{SOURCE_DIR}/{self.id}.py"


def context_view(ctx: CodeContext, idle_seconds: float) -> Context:
    """What the API shows of a context: its status is read from the kernel and the flags, never stored."""
    if ctx.starting:
        status = "starting"
    elif ctx.busy:
        status = "busy"
    elif ctx.kernel is not None and ctx.kernel.alive:
        status = "idle"
    else:
        status = "dead" if ctx.started_once else "idle"
    count = ctx.kernel.execution_count if ctx.kernel is not None else 0
    return Context(
        id=ctx.id,
        sandbox_id=ctx.sandbox_id,
        language="python",
        status=status,
        default=ctx.default,
        execution_count=count,
        created_at=ctx.created_at,
        last_used_at=ctx.last_used_at,
        expires_at=ctx.last_used_at + timedelta(seconds=idle_seconds),
    )
