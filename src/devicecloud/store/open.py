"""Opening the configured store."""

from __future__ import annotations

import asyncio

from devicecloud.config import Settings
from devicecloud.store import migrate
from devicecloud.store.postgres import PostgresStore
from devicecloud.store.sql.store import SqlStore
from devicecloud.store.sqlite import SqliteStore


async def open_store(settings: Settings) -> SqlStore:
    """Migrate the configured database to the newest schema and open it."""
    database = settings.database
    if database.engine == "sqlite":
        database.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, database)
    if database.engine == "postgresql":
        return PostgresStore(database.conninfo)
    return SqliteStore(database.sqlite_path)
