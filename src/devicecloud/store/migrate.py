"""Apply the Alembic migrations shipped with the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from devicecloud.store.url import Database

_HERE = Path(__file__).parent


def upgrade(database: Database) -> None:
    """Bring the database to the newest schema."""
    config = Config()
    config.set_main_option("script_location", str(_HERE / "migrations"))
    config.set_main_option("sqlalchemy.url", database.migration_url.replace("%", "%%"))
    command.upgrade(config, "head")
