"""One reading of the database URL: the engine, the SQLite file, what psycopg and Alembic get."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicecloud.config import Settings
from devicecloud.store.url import parse_database_url, sqlite_file


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///devicecloud.db", Path("devicecloud.db")),
    ("sqlite:///data/dir/devicecloud.db", Path("data/dir/devicecloud.db")),
    ("sqlite:////var/lib/devicecloud/devicecloud.db", Path("/var/lib/devicecloud/devicecloud.db")),
    ("sqlite+pysqlite:////srv/dc.db", Path("/srv/dc.db")),
])
def test_sqlite_urls_name_a_file_relative_or_absolute(url: str, path: Path) -> None:
    database = parse_database_url(url)
    assert database.engine == "sqlite"
    assert database.sqlite_path == path
    assert database.migration_url == f"sqlite:///{path}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg",
                                    "postgresql+psycopg2", "postgres+psycopg"])
def test_postgresql_urls_with_or_without_a_driver(scheme: str) -> None:
    rest = "dc:p%40ss@db.example:5433/devicecloud?sslmode=require&options=-c%20search_path%3Ddc"
    database = parse_database_url(f"{scheme}://{rest}")
    assert database.engine == "postgresql"
    assert database.conninfo == f"postgresql://{rest}"  # everything after the scheme, unchanged
    assert database.migration_url.startswith("postgresql+psycopg://dc:p%40ss@db.example:5433/")
    assert "p%40ss" not in repr(database)


def test_the_default_is_a_file_in_the_data_directory(tmp_path: Path) -> None:
    odd = tmp_path / "100% data"
    database = Settings(data_dir=odd, database_url="").database
    assert database.engine == "sqlite"
    assert database.sqlite_path == odd / "devicecloud.db"
    assert parse_database_url(database.migration_url).sqlite_path == odd / "devicecloud.db"
    assert sqlite_file(Path("rel/x.db")).migration_url == "sqlite:///rel/x.db"
    assert Settings(database_url="postgresql://h/db").database.engine == "postgresql"


@pytest.mark.parametrize(("url", "scheme"), [
    ("mysql://dc:secret@db/devicecloud", "mysql"),
    ("redis://127.0.0.1:6379", "redis"),
    ("devicecloud.db", "devicecloud.db"),
    ("SQLITE:///x.db", "SQLITE"),
])
def test_an_unknown_scheme_stops_with_the_reason_and_no_password(url: str, scheme: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_database_url(url)
    assert str(stopped.value) == (f"unsupported database URL: {scheme}:... "
                                  "(use sqlite:///PATH or postgresql://...)")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_a_sqlite_url_without_a_file_is_refused(url: str) -> None:
    with pytest.raises(SystemExit, match="names its file"):
        parse_database_url(url)
