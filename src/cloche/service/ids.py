"""Identifiers and clocks, in one place so tests and records agree."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_sandbox_id() -> str:
    return "sb_" + secrets.token_hex(12)


def new_run_id() -> str:
    return "run_" + secrets.token_hex(12)


def new_resident_id() -> str:
    return "rs_" + secrets.token_hex(12)


def utcnow() -> datetime:
    return datetime.now(UTC)
