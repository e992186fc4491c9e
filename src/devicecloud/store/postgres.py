"""The PostgreSQL store: the same jobs and the same group commit as SQLite, on psycopg.

The jobs (`store/sql/`) are written once against `connection.Connection`, the small part of the
DB-API that `sqlite3` offers (`execute(sql, params)` with `?` placeholders, then `fetchone`,
`fetchall`, iteration, `rowcount`). `PgConnection` offers the same on a psycopg connection, so a
PostgreSQL deployment runs exactly the code the SQLite one runs, committed in groups by one writer
thread per process (several processes commit side by side; PostgreSQL's row locks keep them
apart). Reads run on a few autocommit connections of their own (`reads.Readers`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import psycopg

from devicecloud.core.errors import InvalidRequest
from devicecloud.store.group_commit import GroupCommitter
from devicecloud.store.reads import Readers
from devicecloud.store.sql.store import SqlStore


@functools.lru_cache(maxsize=1024)
def _translate(sql: str) -> str:
    """`?` placeholders to psycopg's `%s` (and a literal `%` to `%%`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection that offers what `connection.Connection` asks for."""

    def __init__(self, conninfo: str) -> None:
        self._conn = psycopg.connect(conninfo, autocommit=True)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cursor = self._conn.cursor()
        try:
            cursor.execute(_translate(sql), parameters)
        except psycopg.DataError as problem:
            # SQLite keeps a NUL in text, PostgreSQL refuses it: a client's error either way.
            if "NUL" in str(problem):
                raise InvalidRequest("text cannot contain NUL (0x00) characters") from None
            raise
        return cursor

    @property
    def broken(self) -> bool:
        """Whether the server went away (the connection cannot be used again)."""
        return self._conn.broken or self._conn.closed

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self._conn.close()


READERS = 3  # connections for reads, per process (beside the writer's one)


class PostgresStore(SqlStore):
    """The `Store` port on a PostgreSQL database (`conninfo` as psycopg takes it)."""

    def __init__(self, conninfo: str) -> None:
        def connect() -> PgConnection:
            return PgConnection(conninfo)

        super().__init__(GroupCommitter(connect, begin="BEGIN"), Readers(connect, READERS))
