"""Range reads of a field's history (raw rows by `(created_at, id)`, or buckets computed in SQL
from them) and backfills: many points of any age written in one transaction."""

from __future__ import annotations

from devicecloud.core.models import Field
from devicecloud.store.connection import Connection
from devicecloud.store.sql.base import SqlPart
from devicecloud.store.sql.fields import (
    _ADD_HISTORY,
    _full,
    _get_field,
    _insert_field,
    _run_rows,
)

RawRow = tuple[int, int, str]
"""A raw history row: (created_at, id, the value's JSON)."""
Bucket = tuple[int, float, float, float, int, float]
"""A bucket: (start ms, min, max, mean, count, last)."""
Point = tuple[int, str, str]
"""A point to import: (time ms, the value's JSON, its data type)."""

_RAW = ("SELECT created_at, id, value FROM field_history WHERE field_id = ? "
        "AND created_at >= ? AND created_at < ? "
        "AND (created_at > ? OR (created_at = ? AND id > ?)) ORDER BY created_at, id LIMIT ?")
# Numeric rows only: a number's JSON starts with a digit or '-'; booleans count as 1 and 0.
_NUMBER = ("CASE WHEN value = 'true' THEN 1.0 WHEN value = 'false' THEN 0.0 "
           "ELSE CAST(value AS DOUBLE PRECISION) END")
_NUMERIC = ("(value IN ('true', 'false') OR substr(value, 1, 1) = '-' "
            "OR substr(value, 1, 1) BETWEEN '0' AND '9')")
# Each bucket's last value is its latest numeric row's, found by the (field, time) index: a
# window function over every row costs twice as much.
_BUCKETS = (
    "WITH g AS (SELECT b, MIN(x) AS lo, MAX(x) AS hi, AVG(x) AS mean, "
    "COUNT(*) AS n, MAX(created_at) AS lt FROM (SELECT created_at / ? AS b, created_at, "
    f"{_NUMBER} AS x FROM field_history WHERE field_id = ? AND created_at >= ? "
    f"AND created_at < ? AND {_NUMERIC}) AS q GROUP BY b) "
    f"SELECT g.b * ?, g.lo, g.hi, g.mean, g.n, (SELECT {_NUMBER} FROM field_history "
    f"WHERE field_id = ? AND created_at = g.lt AND {_NUMERIC} ORDER BY id DESC LIMIT 1) "
    "FROM g ORDER BY g.b LIMIT ?")
_FIELD_ID = "SELECT id FROM fields WHERE device_id = ? AND name = ?"


def _raw_page(conn: Connection, field_id: str, start: int, end: int, after: tuple[int, int],
              limit: int) -> list[RawRow]:
    # The lower bound follows the cursor, so that each page starts its index range there.
    low = max(start, after[0])
    rows = conn.execute(_RAW, (field_id, low, end, after[0], after[0], after[1], limit))
    return [(int(t), int(i), v) for t, i, v in rows]


def _buckets(conn: Connection, field_id: str, start: int, end: int, size: int,
             limit: int) -> list[Bucket]:
    rows = conn.execute(_BUCKETS, (size, field_id, start, end, size, field_id, limit))
    return [(int(b), float(lo), float(hi), float(mean), int(n), float(last))
            for b, lo, hi, mean, n, last in rows]


def _backfill(conn: Connection, device_id: int, name: str, points: list[Point],
              ids: tuple[str, str], most: int | None) -> tuple[Field | None, bool]:
    """Write every point into the field's history (made with the newest point if new; None if
    the device is full), and make the newest its current value if newer than that. Whether the
    current value changed."""
    newest = max(points, key=lambda point: point[0])
    row = conn.execute(_FIELD_ID, (device_id, name)).fetchone()
    rest = points
    if row is None:
        if _full(conn, device_id, most):
            return None, False
        made = _insert_field(conn, device_id, name, None, newest[1], newest[2], "0", ids,
                             newest[0])
        if made is None:  # added by another process meanwhile: import into that one
            return _backfill(conn, device_id, name, points, ids, most)
        rest = list(points)
        rest.remove(newest)  # _insert_field wrote its history row
        changed = True
        field_id = made.id
    else:
        field_id = row[0]
        changed = conn.execute(
            "UPDATE fields SET value = ?, data_type = ?, updated_at = ? "
            "WHERE id = ? AND updated_at < ?",
            (newest[1], newest[2], newest[0], field_id, newest[0])).rowcount == 1
    _run_rows(conn, _ADD_HISTORY, [(field_id, value, kind, t) for t, value, kind in rest])
    return _get_field(conn, device_id, name), changed


class SqlHistory(SqlPart):
    """The `HistoryStore` port."""

    async def history_rows(self, field_id: str, start: int, end: int, after: tuple[int, int],
                           limit: int) -> list[RawRow]:
        return await self._reader.call(_raw_page, field_id, start, end, after, limit)

    async def history_buckets(self, field_id: str, start: int, end: int, size: int,
                              limit: int) -> list[Bucket]:
        return await self._reader.call(_buckets, field_id, start, end, size, limit)

    async def backfill(self, device_id: int, name: str, points: list[Point],
                       ids: tuple[str, str], most: int | None) -> tuple[Field | None, bool]:
        return await self._writer.call(_backfill, device_id, name, points, ids, most)

