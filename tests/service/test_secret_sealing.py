"""Secrets at rest: the key outside the database, values sealed to their tenant and name."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from cloche.errors import SecretNotFound
from cloche.service.secrets import SecretService, load_key
from cloche.store.sqlite import SqliteMetadataStore


def test_the_key_file_is_made_once_and_private(tmp_path: Path) -> None:
    key = load_key(None, tmp_path / "secrets.key")
    assert stat.S_IMODE((tmp_path / "secrets.key").stat().st_mode) == 0o600
    assert load_key(None, tmp_path / "secrets.key") == key and len(key) == 32
    configured = os.urandom(32)
    assert load_key(base64.urlsafe_b64encode(configured).decode().rstrip("="), tmp_path / "unused") == configured
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError, match="32 bytes"):
        load_key(base64.urlsafe_b64encode(b"short").decode(), tmp_path / "unused")


def test_values_are_sealed_and_bound_to_tenant_and_name(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.db")
    service = SecretService(store, os.urandom(32))
    service.put("alice", "TOKEN", "the-plain-value", ["api.example.com"])
    row = store.get_secret("alice", "TOKEN")
    assert row is not None and b"the-plain-value" not in row.sealed
    held = service.hold("alice", ["TOKEN", "TOKEN"])
    assert held.values == {"TOKEN": "the-plain-value"} and held.hosts == ("api.example.com",)
    row.tenant = "bob"  # a sealed value copied to another tenant does not open
    store.put_secret(row)
    with pytest.raises(SecretNotFound, match="cannot be decrypted"):
        service.hold("bob", ["TOKEN"])
    with pytest.raises(SecretNotFound, match="cannot be decrypted"):
        SecretService(store, os.urandom(32)).hold("alice", ["TOKEN"])  # another key
    with pytest.raises(SecretNotFound, match="'NOPE'"):
        service.hold("alice", ["NOPE"])
