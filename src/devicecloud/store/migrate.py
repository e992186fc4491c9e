"""Apply the Alembic migrations shipped with the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_HERE = Path(__file__).parent


def upgrade(database_url: str) -> None:
    """Bring the database at `database_url` (a synchronous SQLAlchemy URL) to the newest schema."""
    scheme, _, rest = database_url.partition("://")
    if scheme in ("postgresql", "postgres"):
        database_url = f"postgresql+psycopg://{rest}"
    config = Config()
    config.set_main_option("script_location", str(_HERE / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")
