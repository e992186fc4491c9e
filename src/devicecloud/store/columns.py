"""A job shared by the stores' tables: change some named columns of one row."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping


def update_columns(conn: sqlite3.Connection, table: str, allowed: frozenset[str], row_id: object,
                   changes: Mapping[str, str], now: int) -> None:
    """Set `changes` (only columns in `allowed`) and `updated_at` on the row `row_id`."""
    if not changes.keys() <= allowed:
        raise ValueError(f"cannot change {sorted(changes.keys() - allowed)}")
    assignments = "".join(f"{column} = ?, " for column in changes)
    conn.execute(f"UPDATE {table} SET {assignments}updated_at = ? WHERE id = ?",
                 (*changes.values(), now, row_id))
