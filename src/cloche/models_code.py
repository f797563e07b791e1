"""Wire models of code contexts: a persistent interpreter per sandbox, its cells and their rich results.

The shapes follow Jupyter's (and so what agents know from notebook-style sandboxes): a cell's ``results`` are its
displayed values, one MIME bundle each, with images base64-encoded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator

from cloche.models import ImportSuggestion, InstallReport, Strict, UnresolvedImport, seconds

MAX_CELL_CHARS = 1_048_576
CONTEXT_ID_PATTERN = r"^ctx_[0-9a-f]{24}$"
ContextStatus = Literal["starting", "idle", "busy", "dead"]
CellStatus = Literal["ok", "error", "timed_out", "crashed", "install_failed"]


class CreateContext(Strict):
    language: Literal["python"] = Field("python", description="The interpreter: Python (IPython kernel).")


class Context(BaseModel):
    id: str = Field(description="Context id, 'ctx_' followed by 24 hex digits.")
    sandbox_id: str
    language: Literal["python"]
    status: ContextStatus = Field(
        description="starting (its kernel is coming up), idle, busy (a cell runs), dead (the kernel ended; the "
        "next cell starts a new one, with fresh state)."
    )
    default: bool = Field(description="True for the context cells without a context_id run in.")
    execution_count: int = Field(description="Cells run in the current kernel.")
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime = Field(description="When the context is stopped if left idle (CLOCHE_CONTEXT_IDLE_SECONDS).")


class ContextList(BaseModel):
    contexts: list[Context]


class CodeRequest(Strict):
    code: str = Field(max_length=MAX_CELL_CHARS, description="The cell: Python source, IPython magics allowed.")
    context_id: str | None = Field(
        None, pattern=CONTEXT_ID_PATTERN, description="The context to run in; omitted: the sandbox's default one."
    )
    timeout_seconds: float | None = seconds(
        "Wall clock of this cell ('timeout' is accepted too); past it the cell is interrupted and the context keeps "
        "its state. Clamped to the server maximum.",
        validation_alias=AliasChoices("timeout_seconds", "timeout"),
    )

    @model_validator(mode="after")
    def _has_code(self) -> CodeRequest:
        if not self.code.strip():
            raise ValueError("'code' is empty")
        if "\0" in self.code:
            raise ValueError("'code' contains a NUL byte")
        try:
            self.code.encode()
        except UnicodeEncodeError:
            raise ValueError("'code' is not valid Unicode text (a lone surrogate)") from None
        return self


class CodeOutput(BaseModel):
    """One displayed value: the representations the kernel gave, each under its own key."""

    text: str | None = Field(None, description="text/plain")
    html: str | None = Field(None, description="text/html (a pandas DataFrame, ...)")
    markdown: str | None = Field(None, description="text/markdown")
    svg: str | None = Field(None, description="image/svg+xml")
    png: str | None = Field(None, description="image/png, base64")
    jpeg: str | None = Field(None, description="image/jpeg, base64")
    latex: str | None = Field(None, description="text/latex")
    json_data: Any = Field(None, alias="json", description="application/json")
    javascript: str | None = Field(None, description="application/javascript")
    is_main_result: bool = Field(
        False, description="True for the value of the cell's last expression; false for values it displayed."
    )

    model_config = {"populate_by_name": True, "serialize_by_alias": True}

    def formats(self) -> list[str]:
        return [name for name in FORMATS if getattr(self, FORMATS[name]) is not None]


# key in the wire model -> attribute
FORMATS = {
    "text": "text",
    "html": "html",
    "markdown": "markdown",
    "svg": "svg",
    "png": "png",
    "jpeg": "jpeg",
    "latex": "latex",
    "json": "json_data",
    "javascript": "javascript",
}


class CodeError(BaseModel):
    name: str = Field(description="The exception's class, e.g. 'ZeroDivisionError'.")
    value: str = Field(description="Its message.")
    traceback: str = Field(description="The traceback as IPython prints it, without colour codes.")


class CodeResult(BaseModel):
    context_id: str
    status: CellStatus = Field(
        description="ok; error (the cell raised: see error); timed_out (interrupted at its wall clock, state "
        "kept); crashed (the kernel died: the next cell starts a new one); install_failed (its imports could not "
        "be installed: nothing ran)."
    )
    execution_count: int | None = Field(description="The cell's number in its kernel; null when it did not run.")
    stdout: str
    stderr: str
    results: list[CodeOutput] = Field(description="Displayed values and the last expression's value, in order.")
    error: CodeError | None = Field(None, description="The exception the cell raised (status error or timed_out).")
    truncated: bool = Field(False, description="True when output or results went past the server's caps and were cut.")
    duration_ms: int
    restarted: bool = Field(
        False, description="True when the context's kernel was (re)started for this cell, so earlier state is gone."
    )
    restart_reason: str | None = Field(None, description="Why the kernel was restarted, when restarted.")
    install: InstallReport | None = Field(None, description="What the cell's imports needed and what was installed.")
    unlisted_imports: list[ImportSuggestion] = Field(default_factory=list)
    unresolved_imports: list[UnresolvedImport] = Field(default_factory=list)
