"""Data fields and their history: adding (under a free name), changing, deleting, reading."""

from __future__ import annotations

import functools
from itertools import chain
from typing import Any

import orjson

from devicecloud.core.errors import Conflict
from devicecloud.core.events import FIELD_CHANGED, FIELD_DELETED
from devicecloud.core.models import Field, HistoryEntry
from devicecloud.store.connection import Connection
from devicecloud.store.group_commit import GroupCommitter
from devicecloud.store.reads import Readers
from devicecloud.store.sql.base import SqlPart
from devicecloud.store.sql.events import field_data, record

_FIELD_COLUMNS = "id, data_token, device_id, name, value, data_type, permissions, created_at, " \
                 "updated_at"
FIELDS_PER_DEVICE = 1_000
"""The most fields one device may hold unless told otherwise (`--limit device.fields=N`): adding
one more is refused (`Conflict`), so that no device makes its pages, lists and pushes unboundedly
large."""


def _full_text(most: int | None) -> str:
    return f"limit reached: device.fields {most} (a device holds at most {most} data fields; " \
           "delete some first)"
_PROBES = 32  # candidate names looked up per statement when a name is taken
_PROBE_MARKS = ", ".join(["?"] * _PROBES)


def _field(row: tuple[Any, ...]) -> Field:
    fid, data_token, device_id, name, value, data_type, permissions, created, updated = row
    return Field(fid, data_token, device_id, name, orjson.loads(value), data_type, permissions,
                 created, updated)


def _history(conn: Connection, field_id: str, value: str, data_type: str, now: int) -> None:
    conn.execute("INSERT INTO field_history (field_id, value, data_type, created_at) "
                 "VALUES (?, ?, ?, ?)", (field_id, value, data_type, now))


def _full(conn: Connection, device_id: int, most: int | None) -> bool:
    """Whether the device holds `most` fields (reads at most that many index rows); checked in
    the transaction that adds, so concurrent adds cannot pass it together."""
    if most is None:
        return False
    return conn.execute("SELECT 1 FROM fields WHERE device_id = ? ORDER BY name LIMIT 1 OFFSET ?",
                        (device_id, most - 1)).fetchone() is not None


def _insert_field(conn: Connection, device_id: int, name: str, value: Any, encoded: str,
                  data_type: str, permissions: str, ids: tuple[str, str],
                  now: int) -> Field | None:
    """Insert the field unless the name is taken (perhaps just now, by another process: the
    unique index decides, and the transaction goes on); None if it is."""
    cursor = conn.execute(
        f"INSERT INTO fields ({_FIELD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (device_id, name) DO NOTHING",
        (ids[0], ids[1], device_id, name, encoded, data_type, permissions, now, now))
    if cursor.rowcount != 1:
        return None
    _history(conn, ids[0], encoded, data_type, now)
    return Field(ids[0], ids[1], device_id, name, value, data_type, permissions, now, now)


def _candidates(name: str, start: int) -> list[str]:
    return [name if n == 0 else f"{name}({n})" for n in range(start, start + _PROBES)]


def _add_field(conn: Connection, device_id: int, name: str, value: Any, encoded: str,
               data_type: str, permissions: str, ids: tuple[str, str],
               now: int, most: int | None, source: str) -> Field | None:
    """Insert under the first free name of `name`, `name(1)`, ...; None if the device is full.
    The names are looked up by the (device, name) index, 32 per statement."""
    field = _add_free(conn, device_id, name, value, encoded, data_type, permissions, ids, now,
                      most)
    if field is not None:
        record(conn, [(device_id, FIELD_CHANGED, field_data(field.name, encoded, source), now)])
    return field


def _add_free(conn: Connection, device_id: int, name: str, value: Any, encoded: str,
              data_type: str, permissions: str, ids: tuple[str, str],
              now: int, most: int | None) -> Field | None:
    if _full(conn, device_id, most):
        return None
    start = 0
    while True:
        names = _candidates(name, start)
        taken = {row[0] for row in conn.execute(
            f"SELECT name FROM fields WHERE device_id = ? AND name IN ({_PROBE_MARKS})",
            (device_id, *names))}
        for candidate in names:
            if candidate not in taken:
                field = _insert_field(conn, device_id, candidate, value, encoded, data_type,
                                      permissions, ids, now)
                if field is not None:
                    return field
        start += _PROBES


def _modify_field(conn: Connection, device_id: int, name: str, value: Any, encoded: str,
                  data_type: str | None, now: int) -> Field | None:
    row = conn.execute(
        "UPDATE fields SET value = ?, data_type = COALESCE(?, data_type), updated_at = ? "
        f"WHERE device_id = ? AND name = ? RETURNING {_FIELD_COLUMNS}",
        (encoded, data_type, now, device_id, name)).fetchone()
    if row is None:
        return None
    field = _field(row)
    _history(conn, field.id, encoded, field.data_type, now)
    return field


def _modify_logged(conn: Connection, device_id: int, name: str, value: Any, encoded: str,
                   data_type: str | None, now: int, source: str) -> Field | None:
    """`_modify_field`, with its event."""
    field = _modify_field(conn, device_id, name, value, encoded, data_type, now)
    if field is not None:
        record(conn, [(device_id, FIELD_CHANGED, field_data(name, encoded, source), now)])
    return field


# Changes of fields known by id go to the database as multi-row statements, so that a batch costs a
# few statement executions (the driver lets other threads run during each) rather than two per
# change. Each change is one row (field id, encoded value, data type, time) for both statements;
# VALUES columns are named column1, column2, ... in SQLite and PostgreSQL alike.
_SET_VALUES = ("UPDATE fields SET value = v.column2, data_type = v.column3, "
               "updated_at = v.column4 FROM (VALUES ", ") AS v WHERE fields.id = v.column1")
_ADD_HISTORY = ("INSERT INTO field_history (field_id, value, data_type, created_at) VALUES ", "")
_MAX_ROWS = 512  # rows per statement: 2,048 parameters, within both engines' limits
KnownChange = tuple[tuple[str, str, str, int], Field, str]  # (the row, the field, its source)


@functools.lru_cache(maxsize=32)
def _rows_sql(statement: tuple[str, str], rows: int) -> str:
    return statement[0] + ", ".join(["(?, ?, ?, ?)"] * rows) + statement[1]


def _run_rows(conn: Connection, statement: tuple[str, str],
              rows: list[tuple[str, str, str, int]]) -> int:
    """Run `statement` over `rows` in statements of 512, 256, ..., 1 rows (a few distinct SQL
    texts, so they stay prepared); the number of rows changed."""
    changed = done = 0
    size = _MAX_ROWS
    while done < len(rows):
        while done + size > len(rows):
            size //= 2
        params = list(chain.from_iterable(rows[done:done + size]))
        changed += conn.execute(_rows_sql(statement, size), params).rowcount
        done += size
    return changed


def _modify_known(conn: Connection, changes: list[KnownChange]) -> list[Field | None]:
    """Batched job: set the values of fields known by id. If a field is gone (deleted, perhaps by
    another process), every change takes the `_modify_logged` path instead (repeating an update
    already made is harmless). Each change's event is written with it."""
    rows = [change[0] for change in changes]
    latest = list({row[0]: row for row in rows}.values())  # the last change of each field
    if _run_rows(conn, _SET_VALUES, latest) == len(latest):
        _run_rows(conn, _ADD_HISTORY, rows)
        record(conn, [(f.device_id, FIELD_CHANGED, field_data(f.name, row[1], source), row[3])
                      for row, f, source in changes])
        return [change[1] for change in changes]
    return [_modify_logged(conn, f.device_id, f.name, f.value, row[1], f.data_type,
                           f.updated_at, source) for row, f, source in changes]


def _upsert_field(conn: Connection, device_id: int, name: str, value: Any, encoded: str,
                  data_type: str, permissions: str, ids: tuple[str, str],
                  now: int, most: int | None, logged: tuple[str, str]) -> tuple[Field, bool] | None:
    """Modify the field or add it (True); None if it is new and the device is full. `logged` is
    the (type, source) of its event."""
    done = _upsert_unlogged(conn, device_id, name, value, encoded, data_type, permissions, ids,
                            now, most)
    if done is not None:
        record(conn, [(device_id, logged[0], field_data(name, encoded, logged[1]), now)])
    return done


def _upsert_unlogged(conn: Connection, device_id: int, name: str, value: Any, encoded: str,
                     data_type: str, permissions: str, ids: tuple[str, str],
                     now: int, most: int | None) -> tuple[Field, bool] | None:
    while True:
        field = _modify_field(conn, device_id, name, value, encoded, data_type, now)
        if field is not None:
            return field, False
        if _full(conn, device_id, most):
            return None
        added = _insert_field(conn, device_id, name, value, encoded, data_type, permissions,
                              ids, now)
        if added is not None:
            return added, True
        # Another process added the name meanwhile: modify that one.


def _delete_field(conn: Connection, device_id: int, name: str, source: str,
                  now: int) -> Field | None:
    row = conn.execute(f"DELETE FROM fields WHERE device_id = ? AND name = ? "
                       f"RETURNING {_FIELD_COLUMNS}", (device_id, name)).fetchone()
    if row is None:
        return None
    conn.execute("DELETE FROM field_history WHERE field_id = ?", (row[0],))
    conn.execute("DELETE FROM field_units WHERE field_id = ?", (row[0],))
    record(conn, [(device_id, FIELD_DELETED, field_data(name, None, source), now)])
    return _field(row)


def _get_field(conn: Connection, device_id: int, name: str) -> Field | None:
    row = conn.execute(f"SELECT {_FIELD_COLUMNS} FROM fields WHERE device_id = ? AND name = ?",
                       (device_id, name)).fetchone()
    return _field(row) if row else None


def _list_fields(conn: Connection, device_id: int) -> list[Field]:
    rows = conn.execute(f"SELECT {_FIELD_COLUMNS} FROM fields WHERE device_id = ? "
                        "ORDER BY created_at, name", (device_id,))
    return [_field(row) for row in rows]


def _field_by_data_token(conn: Connection, data_token: str) -> Field | None:
    row = conn.execute(f"SELECT {_FIELD_COLUMNS} FROM fields WHERE data_token = ?",
                       (data_token,)).fetchone()
    return _field(row) if row else None


def _set_unit(conn: Connection, device_id: int, name: str, unit: str) -> bool:
    """Give the field its unit ("" takes it away); False if the device has no such field."""
    found = conn.execute("SELECT id FROM fields WHERE device_id = ? AND name = ?",
                         (device_id, name)).fetchone()
    if found is None:
        return False
    conn.execute("DELETE FROM field_units WHERE field_id = ?", (found[0],))
    if unit:
        conn.execute("INSERT INTO field_units (field_id, unit) VALUES (?, ?)", (found[0], unit))
    return True


def _units_of(conn: Connection, device_id: int) -> dict[str, str]:
    rows = conn.execute("SELECT f.name, u.unit FROM field_units u JOIN fields f ON f.id = "
                        "u.field_id WHERE f.device_id = ?", (device_id,))
    return {name: unit for name, unit in rows}


def _history_page(conn: Connection, field_id: str, limit: int,
                  offset: int) -> tuple[list[HistoryEntry], int]:
    total = conn.execute("SELECT COUNT(*) FROM field_history WHERE field_id = ?",
                         (field_id,)).fetchone()[0]
    rows = conn.execute("SELECT value, data_type, created_at FROM field_history "
                        "WHERE field_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                        (field_id, limit, offset))
    return [HistoryEntry(orjson.loads(v), t, c) for v, t, c in rows], total


_KNOWN_LIMIT = 100_000


class SqlFields(SqlPart):
    """The `FieldStore` port.

    It remembers what never changes about the fields it has seen (id, data token, permissions,
    creation time), so a change of a known field needs no `RETURNING` and is batched with others
    (`_modify_known`); the update matches the field by id, so a stale entry is only a miss."""

    def __init__(self, writer: GroupCommitter, readers: Readers) -> None:
        super().__init__(writer, readers)
        self._known: dict[tuple[int, str], tuple[str, str, str, int]] = {}

    def _remember(self, field: Field | None) -> None:
        if field is not None:
            if len(self._known) >= _KNOWN_LIMIT:
                self._known.clear()
            self._known[field.device_id, field.name] = (field.id, field.data_token,
                                                         field.permissions, field.created_at)

    async def set_unit(self, device_id: int, name: str, unit: str) -> bool:
        return await self._writer.call(_set_unit, device_id, name, unit)

    async def units_of(self, device_id: int) -> dict[str, str]:
        return await self._reader.call(_units_of, device_id)

    async def add_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                        data_type: str, permissions: str, ids: tuple[str, str],
                        now: int, most: int | None = FIELDS_PER_DEVICE,
                        source: str = "device") -> Field:
        field = await self._writer.call(_add_field, device_id, name, value, encoded.decode(),
                                        data_type, permissions, ids, now, most, source)
        if field is None:
            raise Conflict(_full_text(most))
        self._remember(field)
        return field

    async def modify_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                           data_type: str | None, now: int,
                           source: str = "device") -> Field | None:
        known = self._known.get((device_id, name))
        if known is None or data_type is None:
            field = await self._writer.call(_modify_logged, device_id, name, value,
                                            encoded.decode(), data_type, now, source)
            self._remember(field)
            return field
        fid, data_token, permissions, created = known
        expected = Field(fid, data_token, device_id, name, value, data_type, permissions, created,
                         now)
        change: KnownChange = ((fid, encoded.decode(), data_type, now), expected, source)
        field = await self._writer.call_batched(_modify_known, change)
        if field is not expected:
            self._known.pop((device_id, name), None)
            self._remember(field)
        return field

    async def upsert_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                           data_type: str, permissions: str, ids: tuple[str, str],
                           now: int, most: int | None = FIELDS_PER_DEVICE, source: str = "api",
                           kind: str = FIELD_CHANGED) -> tuple[Field, bool]:
        done = await self._writer.call(_upsert_field, device_id, name, value, encoded.decode(),
                                       data_type, permissions, ids, now, most, (kind, source))
        if done is None:
            raise Conflict(_full_text(most))
        self._remember(done[0])
        return done

    async def delete_field(self, device_id: int, name: str, source: str = "device",
                           now: int = 0) -> Field | None:
        self._known.pop((device_id, name), None)
        return await self._writer.call(_delete_field, device_id, name, source, now)

    async def get_field(self, device_id: int, name: str) -> Field | None:
        return await self._reader.call(_get_field, device_id, name)

    async def list_fields(self, device_id: int) -> list[Field]:
        return await self._reader.call(_list_fields, device_id)

    async def field_by_data_token(self, data_token: str) -> Field | None:
        return await self._reader.call(_field_by_data_token, data_token)

    async def history(self, field_id: str, limit: int,
                      offset: int) -> tuple[list[HistoryEntry], int]:
        return await self._reader.call(_history_page, field_id, limit, offset)
