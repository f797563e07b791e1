"""A cell's answer: what the kernel sent (``CellOutcome``) with the dependency step's record, every text the
kernel's secrets could appear in masked."""

from __future__ import annotations

import time

from cloche.models_code import CellStatus, CodeError, CodeOutput, CodeResult
from cloche.service.kernel_client import CellOutcome
from cloche.service.masking import Masker
from cloche.service.records import DependencyRecord

TEXT_FORMATS = ("text", "html", "markdown", "svg", "latex", "javascript")


def cell_result(
    context_id: str,
    masker: Masker,
    outcome: CellOutcome,
    started: float,
    record: DependencyRecord,
    restarted: str | None,
    status: CellStatus | None = None,
) -> CodeResult:
    """``restarted``: why the kernel was restarted for this cell (None: it was not)."""
    error = outcome.error
    if error is not None:
        error = CodeError(name=error.name, value=masker.mask(error.value), traceback=masker.mask(error.traceback))
    return CodeResult(
        context_id=context_id,
        status=status or outcome.status,
        execution_count=outcome.execution_count,
        stdout=masker.mask("".join(outcome.stdout)),
        stderr=masker.mask("".join(outcome.stderr)),
        results=[masked(r, masker) for r in outcome.results],
        error=error,
        truncated=outcome.truncated,
        duration_ms=int((time.monotonic() - started) * 1000),
        restarted=restarted is not None,
        restart_reason=restarted,
        install=record.install,
        unlisted_imports=record.unlisted_imports,
        unresolved_imports=record.unresolved_imports,
    )


def masked(result: CodeOutput, masker: Masker) -> CodeOutput:
    if not masker:
        return result
    texts = {k: masker.mask(v) for k in TEXT_FORMATS if isinstance(v := getattr(result, k), str)}
    return result.model_copy(update=texts)
