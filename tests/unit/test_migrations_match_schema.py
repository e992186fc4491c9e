"""The migrations build exactly the tables `store/schema.py` describes."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from devicecloud.store import migrate
from devicecloud.store.schema import metadata
from devicecloud.store.url import sqlite_file


def test_the_migrated_database_is_the_schema(tmp_path: Path) -> None:
    database = sqlite_file(tmp_path / "devicecloud.db")
    migrate.upgrade(database)
    engine = create_engine(database.migration_url)
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        engine.dispose()
