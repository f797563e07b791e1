"""Settings: every field documented (here and in docs/operations.md), env vars honoured."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cloche.errors import ALL_ERRORS, ClocheError
from cloche.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    field = Settings.model_fields[name]
    assert field.description, f"Settings.{name} has no description"
    assert f"CLOCHE_{name.upper()}" in DOCS.read_text(), f"CLOCHE_{name.upper()} is missing from {DOCS.name}"


def test_env_vars_and_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\ncarol:key-c\nbare-key\n")
    monkeypatch.setenv("CLOCHE_PORT", "9001")
    monkeypatch.setenv("CLOCHE_API_KEYS", "alice:key-a")
    monkeypatch.setenv("CLOCHE_API_KEYS_FILE", str(keys))
    settings = Settings()
    assert settings.port == 9001
    parsed = settings.parsed_api_keys()
    assert {k: parsed[k] for k in ("key-a", "key-c")} == {"key-a": "alice", "key-c": "carol"}
    assert parsed["bare-key"] == "key-" + hashlib.sha256(b"bare-key").hexdigest()[:16]
    assert settings.data_dir.is_absolute()


def test_error_codes_are_unique_and_documented() -> None:
    codes = [e.code for e in ALL_ERRORS]
    assert len(codes) == len(set(codes))
    import cloche.errors as module

    for error in ALL_ERRORS:
        assert error.code in (module.__doc__ or ""), f"{error.__name__} missing from the errors docstring"
        assert issubclass(error, ClocheError)
