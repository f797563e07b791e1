"""Structured JSON logs: one object per line, with whatever ``extra`` fields the caller attached.

``bind(run_id=..., sandbox_id=...)`` adds fields to every line logged afterwards by the current asyncio task
and by the tasks and threads it starts (the egress proxy of a run, ``asyncio.to_thread`` work): each request,
and each streamed exec, runs in a task of its own, so bound fields never leak into another request's lines.
Uvicorn's access lines go through the same formatter, with the request's method, path and status as fields.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# Record attributes that are not fields; uvicorn's color_message repeats msg with terminal escapes.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}
_bound: ContextVar[Mapping[str, Any]] = ContextVar("cloche_log_fields", default=MappingProxyType({}))
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def bind(**fields: Any) -> None:
    """Attach ``fields`` to every later log line of the current task (and the tasks it starts)."""
    _bound.set(MappingProxyType({**_bound.get(), **fields}))


def bound() -> dict[str, Any]:
    return dict(_bound.get())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_bound.get())
        entry.update(_access_fields(record))
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Uvicorn's access line as fields: its args are (client, method, path, http version, status)."""
    if record.name != "uvicorn.access" or not isinstance(record.args, tuple) or len(record.args) != 5:
        return {}
    client, method, path, _, status = record.args
    return {"client": client, "method": method, "path": path, "status": status}


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in UVICORN_LOGGERS:  # run with log_config=None: their lines reach the root handler, as JSON
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
