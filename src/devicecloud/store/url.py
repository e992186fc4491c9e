"""Database URLs, read once (SQLAlchemy's syntax): which engine, and what its driver is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

Engine = Literal["sqlite", "postgresql"]
_ENGINES: dict[str, Engine] = {"sqlite": "sqlite", "postgresql": "postgresql",
                               "postgres": "postgresql"}
_MIGRATION_DRIVERS: dict[Engine, str] = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


@dataclass(frozen=True, slots=True)
class Database:
    """Where the store lives: a SQLite file or a PostgreSQL database."""

    engine: Engine
    url: URL  # as SQLAlchemy reads it
    given: str = field(repr=False)  # as written (it may hold a password)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file (relative to the working directory unless absolute)."""
        return Path(self.url.database or "")

    @property
    def conninfo(self) -> str:
        """The PostgreSQL database as psycopg takes it: the URL as written, without a driver
        suffix (so every part libpq understands reaches it unchanged)."""
        return "postgresql://" + self.given.partition("://")[2]

    @property
    def migration_url(self) -> str:
        """The URL for SQLAlchemy and Alembic, naming the driver the store uses."""
        url = self.url.set(drivername=_MIGRATION_DRIVERS[self.engine])
        return url.render_as_string(hide_password=False)


def sqlite_file(path: Path) -> Database:
    """The SQLite database in `path`."""
    url = URL.create("sqlite", database=str(path))
    return Database("sqlite", url, url.render_as_string())


def parse_database_url(text: str) -> Database:
    """`sqlite:///PATH` (`sqlite:////absolute/path`) or `postgresql://...` (also `postgres://`,
    and either with a driver suffix such as `+psycopg`). Anything else stops the program with
    the reason, naming the scheme only (the rest may hold a password)."""
    try:
        url: URL | None = make_url(text)
    except (ArgumentError, ValueError):
        url = None
    engine = _ENGINES.get(url.drivername.partition("+")[0]) if url is not None else None
    if url is None or engine is None:
        raise SystemExit(f"unsupported database URL: {text.split(':', 1)[0]}:... "
                         "(use sqlite:///PATH or postgresql://...)")
    if engine == "sqlite" and not url.database:
        raise SystemExit("a SQLite database URL names its file: sqlite:///PATH")
    return Database(engine, url, text)
