"""The SQLite store: WAL with synchronous=FULL, every write group-committed on one thread, reads
on connections of their own (`reads.Readers`)."""

from __future__ import annotations

import functools
import secrets
import sqlite3
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from devicecloud.core.errors import Conflict
from devicecloud.core.models import (
    Account,
    Device,
    Field,
    HistoryEntry,
    StoredFile,
)
from devicecloud.store.columns import update_columns
from devicecloud.store.group_commit import GroupCommitter
from devicecloud.store.reads import Readers
from devicecloud.store.sqlite_espai import EspAiSqlite
from devicecloud.store.sqlite_files import FilesSqlite

_FIELD_COLUMNS = "id, data_token, device_id, name, value, data_type, permissions, created_at, " \
                 "updated_at"
_DEVICE_COLUMNS = ("id, mac, token, device_type, created_at, updated_at, last_seen_at, owner_id, "
                   "downlink_limit, release_requested_at")
FIELDS_PER_DEVICE = 1_000
"""The most fields one device may hold: adding one more is refused (`Conflict`), so that no device
makes its pages, lists and pushes unboundedly large."""
_FULL = f"a device holds at most {FIELDS_PER_DEVICE} data fields; delete some first"
_PROBES = 32  # candidate names looked up per statement when a name is taken
_PROBE_MARKS = ", ".join(["?"] * _PROBES)


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


def _device(row: tuple[Any, ...]) -> Device:
    return Device(*row)


def _field(row: tuple[Any, ...]) -> Field:
    fid, data_token, device_id, name, value, data_type, permissions, created, updated = row
    return Field(fid, data_token, device_id, name, orjson.loads(value), data_type, permissions,
                 created, updated)


# Jobs: each runs on the writer thread inside the current transaction. ---------------------------

def _register_mac(conn: sqlite3.Connection, mac: str, device_type: str, token: str,
                  now: int) -> Device:
    conn.execute("INSERT INTO devices (mac, token, device_type, created_at, updated_at, "
                 "last_seen_at, public_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mac) "
                 "DO UPDATE SET "
                 "device_type = CASE WHEN excluded.device_type != '' "
                 "THEN excluded.device_type ELSE devices.device_type END, "
                 "updated_at = excluded.updated_at, last_seen_at = excluded.updated_at",
                 (mac, token, device_type, now, now, now, secrets.token_hex(16)))
    row = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE mac = ?", (mac,)).fetchone()
    return _device(row)


def _device_by_token(conn: sqlite3.Connection, token: str) -> Device | None:
    row = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE token = ?",
                       (token,)).fetchone()
    return _device(row) if row else None


def _release_device(conn: sqlite3.Connection, device_id: int, owner_id: int, now: int) -> bool:
    # Only while `owner_id` owns it: a stale caller never undoes another account's bind. The
    # binding to the owner's ESP-AI agent ends with it.
    cursor = conn.execute("UPDATE devices SET owner_id = NULL, agent_id = NULL, updated_at = ?, "
                          "release_requested_at = NULL, release_refused_until = NULL "
                          "WHERE id = ? AND owner_id = ?", (now, device_id, owner_id))
    return cursor.rowcount == 1


def _request_release(conn: sqlite3.Connection, device_id: int, owner_id: int, now: int) -> bool:
    # An earlier request keeps its time; one the owner refused is not renewed before the end of
    # the refusal.
    cursor = conn.execute("UPDATE devices SET release_requested_at = "
                          "COALESCE(release_requested_at, ?) WHERE id = ? AND owner_id = ? AND "
                          "(release_refused_until IS NULL OR release_refused_until <= ?)",
                          (now, device_id, owner_id, now))
    return cursor.rowcount == 1


def _refuse_release(conn: sqlite3.Connection, device_id: int, owner_id: int,
                    until: int) -> bool:
    cursor = conn.execute("UPDATE devices SET release_requested_at = NULL, "
                          "release_refused_until = ? WHERE id = ? AND owner_id = ?",
                          (until, device_id, owner_id))
    return cursor.rowcount == 1


def _release_due(conn: sqlite3.Connection, asked_before: int, now: int) -> list[str]:
    # Each row is released once, whichever process sweeps first.
    rows = conn.execute("UPDATE devices SET owner_id = NULL, agent_id = NULL, updated_at = ?, "
                        "release_requested_at = NULL WHERE release_requested_at <= ? "
                        "RETURNING token", (now, asked_before)).fetchall()
    return [row[0] for row in rows]


def _bind_device(conn: sqlite3.Connection, device_id: int, owner_id: int, now: int) -> bool:
    cursor = conn.execute("UPDATE devices SET owner_id = ?, updated_at = ?, "
                          "release_requested_at = NULL, release_refused_until = CASE WHEN "
                          "owner_id = ? THEN release_refused_until END "
                          "WHERE id = ? AND (owner_id IS NULL OR owner_id = ?)",
                          (owner_id, now, owner_id, device_id, owner_id))
    return cursor.rowcount == 1


def _devices_of(conn: sqlite3.Connection, owner_id: int) -> list[Device]:
    rows = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE owner_id = ? ORDER BY id",
                        (owner_id,))
    return [_device(row) for row in rows]


_ACCOUNT_COLUMNS = "id, email, display_name, phone, open_api_key, created_at, session_epoch"
_ACCOUNT_CHANGES = frozenset({"display_name", "phone", "open_api_key", "password_hash",
                              "session_epoch"})


def _create_account(conn: sqlite3.Connection, email: str, password_hash: str, display_name: str,
                    phone: str, open_api_key: str, now: int) -> Account | None:
    row = conn.execute(
        "INSERT INTO accounts (email, password_hash, display_name, phone, open_api_key, "
        f"created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING "
        f"RETURNING {_ACCOUNT_COLUMNS}",
        (email, password_hash, display_name, phone, open_api_key, now, now)).fetchone()
    return Account(*row) if row else None


def _account_login(conn: sqlite3.Connection, email: str) -> tuple[Account, str] | None:
    row = conn.execute(f"SELECT {_ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE email = ?",
                       (email,)).fetchone()
    return (Account(*row[:-1]), row[-1]) if row else None


def _account_where(conn: sqlite3.Connection, column: str, value: object) -> Account | None:
    row = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE {column} = ?",
                       (value,)).fetchone()
    return Account(*row) if row else None


def _set_downlink_limit(conn: sqlite3.Connection, device_id: int, limit: int | None) -> None:
    conn.execute("UPDATE devices SET downlink_limit = ? WHERE id = ?", (limit, device_id))


def _touch(conn: sqlite3.Connection, device_id: int, now: int) -> None:
    conn.execute("UPDATE devices SET last_seen_at = ? WHERE id = ?", (now, device_id))


def _history(conn: sqlite3.Connection, field_id: str, value: str, data_type: str,
             now: int) -> None:
    conn.execute("INSERT INTO field_history (field_id, value, data_type, created_at) "
                 "VALUES (?, ?, ?, ?)", (field_id, value, data_type, now))


def _full(conn: sqlite3.Connection, device_id: int) -> bool:
    """Whether the device holds `FIELDS_PER_DEVICE` fields (reads at most that many index rows)."""
    return conn.execute("SELECT 1 FROM fields WHERE device_id = ? ORDER BY name LIMIT 1 OFFSET ?",
                        (device_id, FIELDS_PER_DEVICE - 1)).fetchone() is not None


def _insert_field(conn: sqlite3.Connection, device_id: int, name: str, value: Any,
                  encoded: str, data_type: str, permissions: str, ids: tuple[str, str],
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


def _add_field(conn: sqlite3.Connection, device_id: int, name: str, value: Any, encoded: str,
               data_type: str, permissions: str, ids: tuple[str, str],
               now: int) -> Field | None:
    """Insert under the first free name of `name`, `name(1)`, ...; None if the device is full.
    The names are looked up by the (device, name) index, 32 per statement."""
    if _full(conn, device_id):
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


def _modify_field(conn: sqlite3.Connection, device_id: int, name: str, value: Any,
                  encoded: str, data_type: str | None, now: int) -> Field | None:
    row = conn.execute(
        "UPDATE fields SET value = ?, data_type = COALESCE(?, data_type), updated_at = ? "
        f"WHERE device_id = ? AND name = ? RETURNING {_FIELD_COLUMNS}",
        (encoded, data_type, now, device_id, name)).fetchone()
    if row is None:
        return None
    field = _field(row)
    _history(conn, field.id, encoded, field.data_type, now)
    return field


# Changes of fields known by id go to the database as multi-row statements, so that a batch costs a
# few statement executions (the driver lets other threads run during each) rather than two per
# change. Each change is one row (field id, encoded value, data type, time) for both statements;
# VALUES columns are named column1, column2, ... in SQLite and PostgreSQL alike.
_SET_VALUES = ("UPDATE fields SET value = v.column2, data_type = v.column3, "
               "updated_at = v.column4 FROM (VALUES ", ") AS v WHERE fields.id = v.column1")
_ADD_HISTORY = ("INSERT INTO field_history (field_id, value, data_type, created_at) VALUES ", "")
_MAX_ROWS = 512  # rows per statement: 2,048 parameters, within both engines' limits
KnownChange = tuple[tuple[str, str, str, int], Field]  # (the row, the resulting field)


@functools.lru_cache(maxsize=32)
def _rows_sql(statement: tuple[str, str], rows: int) -> str:
    return statement[0] + ", ".join(["(?, ?, ?, ?)"] * rows) + statement[1]


def _run_rows(conn: sqlite3.Connection, statement: tuple[str, str],
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


def _modify_known(conn: sqlite3.Connection, changes: list[KnownChange]) -> list[Field | None]:
    """Batched job: set the values of fields known by id. If a field is gone (deleted, perhaps by
    another process), every change takes the `_modify_field` path instead (repeating an update
    already made is harmless)."""
    rows = [change[0] for change in changes]
    latest = list({row[0]: row for row in rows}.values())  # the last change of each field
    if _run_rows(conn, _SET_VALUES, latest) == len(latest):
        _run_rows(conn, _ADD_HISTORY, rows)
        return [change[1] for change in changes]
    return [_modify_field(conn, f.device_id, f.name, f.value, row[1], f.data_type, f.updated_at)
            for row, f in changes]


def _upsert_field(conn: sqlite3.Connection, device_id: int, name: str, value: Any,
                  encoded: str, data_type: str, permissions: str, ids: tuple[str, str],
                  now: int) -> tuple[Field, bool] | None:
    """Modify the field or add it (True); None if it is new and the device is full."""
    while True:
        field = _modify_field(conn, device_id, name, value, encoded, data_type, now)
        if field is not None:
            return field, False
        if _full(conn, device_id):
            return None
        added = _insert_field(conn, device_id, name, value, encoded, data_type, permissions,
                              ids, now)
        if added is not None:
            return added, True
        # Another process added the name meanwhile: modify that one.


def _delete_field(conn: sqlite3.Connection, device_id: int, name: str) -> Field | None:
    row = conn.execute(f"DELETE FROM fields WHERE device_id = ? AND name = ? "
                       f"RETURNING {_FIELD_COLUMNS}", (device_id, name)).fetchone()
    if row is None:
        return None
    conn.execute("DELETE FROM field_history WHERE field_id = ?", (row[0],))
    return _field(row)


def _get_field(conn: sqlite3.Connection, device_id: int, name: str) -> Field | None:
    row = conn.execute(f"SELECT {_FIELD_COLUMNS} FROM fields WHERE device_id = ? AND name = ?",
                       (device_id, name)).fetchone()
    return _field(row) if row else None


def _list_fields(conn: sqlite3.Connection, device_id: int) -> list[Field]:
    rows = conn.execute(f"SELECT {_FIELD_COLUMNS} FROM fields WHERE device_id = ? "
                        "ORDER BY created_at, name", (device_id,))
    return [_field(row) for row in rows]


def _field_by_data_token(conn: sqlite3.Connection, data_token: str) -> Field | None:
    row = conn.execute(f"SELECT {_FIELD_COLUMNS} FROM fields WHERE data_token = ?",
                       (data_token,)).fetchone()
    return _field(row) if row else None


def _history_page(conn: sqlite3.Connection, field_id: str, limit: int,
                  offset: int) -> tuple[list[HistoryEntry], int]:
    total = conn.execute("SELECT COUNT(*) FROM field_history WHERE field_id = ?",
                         (field_id,)).fetchone()[0]
    rows = conn.execute("SELECT value, data_type, created_at FROM field_history "
                        "WHERE field_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                        (field_id, limit, offset))
    return [HistoryEntry(orjson.loads(v), t, c) for v, t, c in rows], total


def _add_file(conn: sqlite3.Connection, f: StoredFile) -> None:
    conn.execute("INSERT INTO files (id, device_id, field_name, file_name, content_type, size, "
                 "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (f.id, f.device_id, f.field_name, f.file_name, f.content_type, f.size,
                  f.created_at))


def _get_file(conn: sqlite3.Connection, file_id: str) -> StoredFile | None:
    row = conn.execute("SELECT id, device_id, field_name, file_name, content_type, size, "
                       "created_at FROM files WHERE id = ?", (file_id,)).fetchone()
    return StoredFile(*row) if row else None


def _put_pair_code(conn: sqlite3.Connection, code: str, device_id: int, expires_at: int,
                   now: int) -> bool:
    conn.execute("DELETE FROM pair_codes WHERE expires_at <= ? OR device_id = ?",
                 (now, device_id))
    cursor = conn.execute("INSERT INTO pair_codes (code, device_id, expires_at) VALUES (?, ?, ?) "
                          "ON CONFLICT (code) DO NOTHING", (code, device_id, expires_at))
    return cursor.rowcount == 1


def _take_pair_code(conn: sqlite3.Connection, code: str, now: int) -> str | None:
    row = conn.execute("DELETE FROM pair_codes WHERE code = ? RETURNING device_id, expires_at",
                       (code,)).fetchone()
    if row is None or row[1] <= now:
        return None
    found = conn.execute("SELECT token FROM devices WHERE id = ?", (row[0],)).fetchone()
    return found[0] if found else None


_KNOWN_LIMIT = 100_000


class SqlStore(EspAiSqlite, FilesSqlite):
    """The `Store` port: writes as jobs for a group-committing writer, reads on `Readers`
    (never queued behind or inside a group); subclasses choose the engine.

    It remembers what never changes about the fields it has seen (id, data token, permissions,
    creation time), so a change of a known field needs no `RETURNING` and is batched with others
    (`_modify_known`); the update matches the field by id, so a stale entry is only a miss."""

    def __init__(self, writer: GroupCommitter, readers: Readers) -> None:
        self._writer = writer
        self._reader = readers
        self._known: dict[tuple[int, str], tuple[str, str, str, int]] = {}

    def _remember(self, field: Field | None) -> None:
        if field is not None:
            if len(self._known) >= _KNOWN_LIMIT:
                self._known.clear()
            self._known[field.device_id, field.name] = (field.id, field.data_token,
                                                         field.permissions, field.created_at)

    @property
    def stats(self) -> tuple[int, int]:
        """(transactions committed, jobs run): their ratio is the mean group size."""
        return self._writer.batches, self._writer.jobs

    async def register_mac(self, mac: str, device_type: str, token: str, now: int) -> Device:
        return await self._writer.call(_register_mac, mac, device_type, token, now)

    async def device_by_token(self, token: str) -> Device | None:
        return await self._reader.call(_device_by_token, token)

    async def request_release(self, device_id: int, owner_id: int, now: int) -> bool:
        return await self._writer.call(_request_release, device_id, owner_id, now)

    async def refuse_release(self, device_id: int, owner_id: int, until: int) -> bool:
        return await self._writer.call(_refuse_release, device_id, owner_id, until)

    async def release_due(self, asked_before: int, now: int) -> list[str]:
        return await self._writer.call(_release_due, asked_before, now)

    async def release_device(self, device_id: int, owner_id: int, now: int) -> bool:
        return await self._writer.call(_release_device, device_id, owner_id, now)

    async def bind_device(self, device_id: int, owner_id: int, now: int) -> bool:
        return await self._writer.call(_bind_device, device_id, owner_id, now)

    async def devices_of(self, owner_id: int) -> list[Device]:
        return await self._reader.call(_devices_of, owner_id)

    async def create_account(self, email: str, password_hash: str, display_name: str,
                             phone: str, open_api_key: str, now: int) -> Account | None:
        return await self._writer.call(_create_account, email, password_hash, display_name,
                                       phone, open_api_key, now)

    async def account_login(self, email: str) -> tuple[Account, str] | None:
        return await self._reader.call(_account_login, email)

    async def account_by_id(self, account_id: int) -> Account | None:
        return await self._reader.call(_account_where, "id", account_id)

    async def account_by_api_key(self, open_api_key: str) -> Account | None:
        return await self._reader.call(_account_where, "open_api_key", open_api_key)

    async def update_account(self, account_id: int, changes: dict[str, str], now: int) -> None:
        await self._writer.call(update_columns, "accounts", _ACCOUNT_CHANGES, account_id,
                                changes, now)

    async def set_downlink_limit(self, device_id: int, limit: int | None) -> None:
        await self._writer.call(_set_downlink_limit, device_id, limit)

    async def touch(self, device_id: int, now: int) -> None:
        await self._writer.call(_touch, device_id, now)

    async def add_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                        data_type: str, permissions: str, ids: tuple[str, str],
                        now: int) -> Field:
        field = await self._writer.call(_add_field, device_id, name, value, encoded.decode(),
                                        data_type, permissions, ids, now)
        if field is None:
            raise Conflict(_FULL)
        self._remember(field)
        return field

    async def modify_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                           data_type: str | None, now: int) -> Field | None:
        known = self._known.get((device_id, name))
        if known is None or data_type is None:
            field = await self._writer.call(_modify_field, device_id, name, value,
                                            encoded.decode(), data_type, now)
            self._remember(field)
            return field
        fid, data_token, permissions, created = known
        expected = Field(fid, data_token, device_id, name, value, data_type, permissions, created,
                         now)
        change: KnownChange = ((fid, encoded.decode(), data_type, now), expected)
        field = await self._writer.call_batched(_modify_known, change)
        if field is not expected:
            self._known.pop((device_id, name), None)
            self._remember(field)
        return field

    async def upsert_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                           data_type: str, permissions: str, ids: tuple[str, str],
                           now: int) -> tuple[Field, bool]:
        done = await self._writer.call(_upsert_field, device_id, name, value, encoded.decode(),
                                       data_type, permissions, ids, now)
        if done is None:
            raise Conflict(_FULL)
        self._remember(done[0])
        return done

    async def delete_field(self, device_id: int, name: str) -> Field | None:
        self._known.pop((device_id, name), None)
        return await self._writer.call(_delete_field, device_id, name)

    async def get_field(self, device_id: int, name: str) -> Field | None:
        return await self._reader.call(_get_field, device_id, name)

    async def list_fields(self, device_id: int) -> list[Field]:
        return await self._reader.call(_list_fields, device_id)

    async def field_by_data_token(self, data_token: str) -> Field | None:
        return await self._reader.call(_field_by_data_token, data_token)

    async def history(self, field_id: str, limit: int,
                      offset: int) -> tuple[list[HistoryEntry], int]:
        return await self._reader.call(_history_page, field_id, limit, offset)

    async def add_file(self, file: StoredFile) -> None:
        await self._writer.call(_add_file, file)

    async def get_file(self, file_id: str) -> StoredFile | None:
        return await self._reader.call(_get_file, file_id)

    async def put_pair_code(self, code: str, device_id: int, expires_at: int, now: int) -> bool:
        return await self._writer.call(_put_pair_code, code, device_id, expires_at, now)

    async def take_pair_code(self, code: str, now: int) -> str | None:
        return await self._writer.call(_take_pair_code, code, now)

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()


class SqliteStore(SqlStore):
    """The `Store` port on one SQLite file."""

    def __init__(self, path: Path) -> None:
        super().__init__(GroupCommitter(lambda: connect(path)),
                         Readers(lambda: connect_reader(path)))
