"""How every command reports failure: one line on stderr, ``cloche: ...``, and a non-zero exit; no traceback.

Server errors read ``cloche: <code>: <message>`` in every command; a server that cannot be reached, or that
refuses the API key, says which setting to change.
"""

from __future__ import annotations

import os
from typing import NoReturn

import httpx
import typer
from pydantic import ValidationError

from cloche.sdk.calls import DEFAULT_URL
from cloche.sdk.errors import ClocheAPIError

USAGE = 2  # what the user asked cannot be done as asked (missing folder, no data dir, bad settings)
FAILED = 1  # the server refused, or could not be reached
CANNOT_START = 3  # the server's start-up checks refused this host or data dir


def fail(message: str, status: int = USAGE) -> NoReturn:
    typer.echo(f"cloche: {message}", err=True)
    raise typer.Exit(status)


def server_url() -> str:
    return os.environ.get("CLOCHE_URL", DEFAULT_URL)


def describe(exc: ClocheAPIError) -> str:
    """A server error as every command prints it."""
    message = " ".join(exc.message.split())  # one line, whatever the server sent
    if exc.status == 401:
        message += f" (set CLOCHE_API_KEY to a key the server at {server_url()} accepts)"
    return f"{exc.code}: {message}"


def unreachable(exc: httpx.TransportError) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return f"cannot reach the cloche server at {server_url()} ({reason}); start it or set CLOCHE_URL"


def invalid_settings(exc: ValidationError) -> str:
    """Settings errors named by the variable to fix."""
    parts = []
    for err in exc.errors():
        name = "CLOCHE_" + "_".join(str(p) for p in err.get("loc", ())).upper()
        parts.append(f"{name}: {err.get('msg', 'invalid')}")
    return "invalid setting " + "; ".join(parts)
