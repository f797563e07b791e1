"""Secrets: per-tenant named values, encrypted at rest, injected only into the runs that ask for them.

Values are sealed with AES-GCM (``cryptography``) under a 256-bit key that never enters the database:
``CLOCHE_SECRETS_KEY`` (URL-safe base64), or else ``<data>/secrets.key``, created 0600 at first start. Each
ciphertext is bound to its tenant and name (associated data), so a row copied to another tenant or name does
not decrypt. No read route returns a value; runs get them as environment variables, install jails never.
"""

from __future__ import annotations

import base64
import os
import secrets as token
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloche.errors import SecretNotFound
from cloche.service.ids import utcnow
from cloche.store.metadata import MetadataStore, SecretRow

KEY_BYTES = 32
NONCE_BYTES = 12


def load_key(configured: str | None, key_file: Path) -> bytes:
    """The configured key, or the key file's (created 0600 at first start)."""
    if configured:
        key = base64.urlsafe_b64decode(configured.encode() + b"=" * (-len(configured) % 4))
        if len(key) != KEY_BYTES:
            raise ValueError("CLOCHE_SECRETS_KEY must be 32 bytes in URL-safe base64")
        return key
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        fd = -1
    if fd < 0:
        key = key_file.read_bytes()
        if len(key) != KEY_BYTES:
            raise ValueError(f"{key_file} is not a {KEY_BYTES}-byte key; restore it or set CLOCHE_SECRETS_KEY")
        return key
    key = token.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key


@dataclass(frozen=True)
class Held:
    """The secrets one run holds: values by name, and the hosts they are meant for."""

    values: dict[str, str]
    hosts: tuple[str, ...]


class SecretService:
    def __init__(self, store: MetadataStore, key: bytes) -> None:
        self.store = store
        self._aead = AESGCM(key)

    @staticmethod
    def _bound_to(tenant: str, name: str) -> bytes:
        return f"{tenant}\0{name}".encode()

    def put(self, tenant: str, name: str, value: str, hosts: list[str]) -> SecretRow:
        """Create or replace (rotate) the secret ``name`` of ``tenant``."""
        nonce = token.token_bytes(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, value.encode(), self._bound_to(tenant, name))
        row = SecretRow(tenant=tenant, name=name, sealed=sealed, hosts=hosts, created_at=utcnow())
        self.store.put_secret(row)
        return row

    def listing(self, tenant: str) -> list[SecretRow]:
        return self.store.list_secrets(tenant)

    def delete(self, tenant: str, name: str) -> None:
        if not self.store.delete_secret(tenant, name):
            raise SecretNotFound(f"no secret {name!r}; list yours with GET /v1/secrets")

    def check(self, tenant: str, names: list[str]) -> None:
        """Every name is one of the tenant's secrets (a sandbox asks for them at create)."""
        known = {row.name for row in self.store.list_secrets(tenant)}
        missing = [n for n in names if n not in known]
        if missing:
            raise SecretNotFound(f"no secret named {', '.join(map(repr, missing))}; create it with POST /v1/secrets")

    def hold(self, tenant: str, names: list[str]) -> Held:
        """The values (decrypted) and hosts of ``names``, for one run."""
        values: dict[str, str] = {}
        hosts: list[str] = []
        for name in dict.fromkeys(names):
            row = self.store.get_secret(tenant, name)
            if row is None:
                raise SecretNotFound(f"no secret named {name!r}; create it with POST /v1/secrets")
            nonce, body = row.sealed[:NONCE_BYTES], row.sealed[NONCE_BYTES:]
            try:
                values[name] = self._aead.decrypt(nonce, body, self._bound_to(tenant, name)).decode()
            except InvalidTag:
                raise SecretNotFound(f"secret {name!r} cannot be decrypted with this server's key") from None
            hosts += [h for h in row.hosts if h not in hosts]
        return Held(values, tuple(hosts))
