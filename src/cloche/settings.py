"""The one settings object. Environment variables ``CLOCHE_*``, CLI flags and defaults all land here.

Every field is documented; ``tests/test_settings.py`` fails when one is not, and ``docs/operations.md``
lists them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REGISTRIES: tuple[str, ...] = (
    "pypi.org:443",
    "files.pythonhosted.org:443",
    "registry.npmjs.org:443",
    "proxy.golang.org:443",
    "sum.golang.org:443",
    "repo.maven.apache.org:443",
    "repo1.maven.org:443",
)


class Settings(BaseSettings):
    """Server configuration; read from ``CLOCHE_<FIELD>`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CLOCHE_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(
        8000, ge=0, le=65535, description="TCP port the HTTP server binds (0 picks a free one)."
    )
    data_dir: Path = Field(
        Path(".data"),
        description="Root of all state: SQLite metadata, workspaces, environments, run logs, audit log.",
    )
    api_keys: str = Field(
        "",
        description=(
            "Comma-separated API keys, each optionally 'tenant:key'. Empty means no auth, "
            "which is only allowed on a loopback address."
        ),
    )
    api_keys_file: Path | None = Field(
        None, description="File with one 'tenant:key' (or bare key) per line; merged with api_keys."
    )
    default_timeout_seconds: float = Field(
        30.0, gt=0, description="Wall clock for an exec that asks for none."
    )
    max_timeout_seconds: float = Field(600.0, gt=0, description="Largest wall clock an exec may ask for.")
    output_limit_bytes: int = Field(
        1_048_576, gt=0, description="Cap per stream (stdout, stderr) kept for one run; beyond it, truncated."
    )
    max_upload_bytes: int = Field(64 * 1_048_576, gt=0, description="Largest single upload request body.")
    max_archive_members: int = Field(10_000, gt=0, description="Most members one uploaded archive may hold.")
    max_archive_bytes: int = Field(
        256 * 1_048_576, gt=0, description="Most bytes one uploaded archive may expand to."
    )
    default_ttl_seconds: float | None = Field(
        None, gt=0, description="Idle TTL for sandboxes that ask for none; unset means persistent."
    )
    reaper_interval_seconds: float = Field(30.0, gt=0, description="How often expired sandboxes are reaped.")
    uid_base: int = Field(
        200_000, ge=1000, description="First host uid of the per-sandbox uid pool; sandboxes never share one."
    )
    uid_count: int = Field(60_000, gt=0, description="Size of the per-sandbox uid pool.")
    sandbox_uid: int = Field(
        1000, ge=1, description="The unprivileged uid (and gid) code sees inside the jail."
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def parsed_api_keys(self) -> dict[str, str]:
        """Map API key -> tenant. A bare key is its own tenant name (hashed prefix)."""
        lines = [part.strip() for part in self.api_keys.split(",")]
        if self.api_keys_file is not None:
            lines += [ln.strip() for ln in self.api_keys_file.read_text().splitlines()]
        keys: dict[str, str] = {}
        for line in lines:
            if not line or line.startswith("#"):
                continue
            tenant, sep, key = line.partition(":")
            if not sep:
                key, tenant = tenant, "key-" + tenant[:6]
            keys[key] = tenant
        return keys
