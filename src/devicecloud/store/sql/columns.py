"""Helpers shared by the jobs: change some named columns of one row; a savepoint."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

from devicecloud.store.connection import Connection


def update_columns(conn: Connection, table: str, allowed: frozenset[str], row_id: object,
                   changes: Mapping[str, str], now: int) -> None:
    """Set `changes` (only columns in `allowed`) and `updated_at` on the row `row_id`."""
    if not changes.keys() <= allowed:
        raise ValueError(f"cannot change {sorted(changes.keys() - allowed)}")
    assignments = "".join(f"{column} = ?, " for column in changes)
    conn.execute(f"UPDATE {table} SET {assignments}updated_at = ? WHERE id = ?",
                 (*changes.values(), now, row_id))


@contextlib.contextmanager
def savepoint(conn: Connection) -> Iterator[Callable[[], None]]:
    """A savepoint in the group's transaction: calling what it yields undoes this job's changes
    since, leaving the rest of the group's transaction as it was (SQLite and PostgreSQL alike)."""
    def undo() -> None:
        conn.execute("ROLLBACK TO SAVEPOINT job")

    conn.execute("SAVEPOINT job")
    yield undo
    conn.execute("RELEASE SAVEPOINT job")
