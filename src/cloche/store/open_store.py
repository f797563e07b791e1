"""Which metadata store a server uses: PostgreSQL when ``CLOCHE_DATABASE_URL`` is set, else embedded SQLite."""

from __future__ import annotations

from cloche.paths import DataPaths
from cloche.settings import Settings
from cloche.store.metadata import MetadataStore


def open_metadata_store(settings: Settings, paths: DataPaths) -> MetadataStore:
    if settings.database_url is not None:
        from cloche.store.postgres import PostgresMetadataStore  # psycopg is loaded only when asked for

        return PostgresMetadataStore(settings.database_url.get_secret_value())
    from cloche.store.sqlite import SqliteMetadataStore

    return SqliteMetadataStore(paths.db)
