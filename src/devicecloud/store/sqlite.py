"""The SQLite store: WAL with synchronous=FULL, every write group-committed on one thread, reads
on read-only connections of their own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from devicecloud.store.group_commit import GroupCommitter
from devicecloud.store.reads import Readers
from devicecloud.store.sql.store import SqlStore


def connect(path: Path) -> sqlite3.Connection:
    """A connection tuned for durable group commit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=256)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection, for reads beside the writer (WAL lets them run while it commits)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=256)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA journal_mode=WAL")  # whichever connection comes first sets it
    conn.execute("PRAGMA query_only=ON")
    return conn


class SqliteStore(SqlStore):
    """The `Store` port on one SQLite file."""

    def __init__(self, path: Path) -> None:
        super().__init__(GroupCommitter(lambda: connect(path)),
                         Readers(lambda: connect_reader(path)))
