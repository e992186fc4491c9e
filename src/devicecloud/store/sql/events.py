"""The event log: the rows the write jobs add in their own transaction, and a consumer's reads.

An event belongs to the account owning the device when the change commits; a device without an
owner has no one to tell, so its changes write no row. Ids come from the one row of `event_seq`,
updated in the transaction that writes the events: on PostgreSQL that row's lock, held until the
commit, makes every other writer's events wait for this transaction's, so ids increase in commit
order (for one device and for the whole log), and a consumer that reads after an id misses
nothing that commits later.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any, TypeVar

import orjson

from devicecloud.core.events import LoggedEvent
from devicecloud.store.connection import Connection
from devicecloud.store.sql.base import SqlPart

T = TypeVar("T")
Pending = tuple[int, str, str, int]
"""An event a job is about to write: (device row id, type, its data as JSON without `device`,
time)."""
_Row = tuple[int, int, str, str, str, int]  # id, account, device public id, type, data, time
_MAX_DEVICES = 512  # device ids per lookup
_MAX_ROWS = 256  # event rows per INSERT: 1,536 parameters, within both engines' limits


def _chunks(items: Sequence[T], most: int) -> Iterator[Sequence[T]]:
    """`items` in slices of `most`, then of halves of it down to 1: a few distinct statement
    texts, which stay prepared."""
    done, size = 0, most
    while done < len(items):
        while done + size > len(items):
            size //= 2
        yield items[done:done + size]
        done += size


@functools.lru_cache(maxsize=32)
def _owners_sql(count: int) -> str:
    marks = ", ".join(["?"] * count)
    return (f"SELECT id, owner_id, public_id FROM devices WHERE id IN ({marks}) "
            "AND owner_id IS NOT NULL AND public_id IS NOT NULL")


@functools.lru_cache(maxsize=32)
def _insert_sql(count: int) -> str:
    return ("INSERT INTO events (id, account_id, device, type, data, created_at) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?)"] * count))


def field_data(name: str, encoded: str | None, source: str) -> str:
    """The data of a field event: its name, its value (already JSON; None for a deletion) and
    who changed it."""
    value = "" if encoded is None else f',"value":{encoded}'
    return f'{{"name":{orjson.dumps(name).decode()}{value},"source":"{source}"}}'


def _write(conn: Connection, rows: list[tuple[int, str, str, str, int]]) -> None:
    """Give `rows` (account, device public id, type, data, time) their ids and insert them."""
    if not rows:
        return
    last = conn.execute("UPDATE event_seq SET last_id = last_id + ? WHERE id = 1 "
                        "RETURNING last_id", (len(rows),)).fetchone()[0]
    first = last - len(rows) + 1
    numbered: list[_Row] = [(first + n, *row) for n, row in enumerate(rows)]
    for part in _chunks(numbered, _MAX_ROWS):
        conn.execute(_insert_sql(len(part)), list(chain.from_iterable(part)))


def record(conn: Connection, pending: list[Pending]) -> None:
    """Write the events of `pending` whose devices have an owner now, in this transaction (one
    lookup of the devices, and nothing more when none has an owner)."""
    if not pending:
        return
    devices = list({event[0] for event in pending})
    owners: dict[int, tuple[int, str]] = {}
    for part in _chunks(devices, _MAX_DEVICES):
        for device_id, owner_id, public_id in conn.execute(_owners_sql(len(part)), part):
            owners[device_id] = (owner_id, public_id)
    _write(conn, [(*owners[device_id], kind, data, now)
                  for device_id, kind, data, now in pending if device_id in owners])


def record_for(conn: Connection, device_id: int, account_id: int, kind: str, data: str,
               now: int) -> None:
    """Write one event of the device for `account_id` (a bind's new owner, a release's old one)."""
    found = conn.execute("SELECT public_id FROM devices WHERE id = ?", (device_id,)).fetchone()
    if found is not None and found[0] is not None:
        _write(conn, [(account_id, found[0], kind, data, now)])


def _record_by_token(conn: Connection, token: str, kind: str, data: str, now: int) -> None:
    found = conn.execute("SELECT id FROM devices WHERE token = ?", (token,)).fetchone()
    if found is not None:
        record(conn, [(found[0], kind, data, now)])


def _event(row: tuple[Any, ...]) -> LoggedEvent:
    event_id, kind, device, data, created = row
    return LoggedEvent(event_id, kind, device, orjson.loads(data), created)


def _events_after(conn: Connection, account_id: int, after: int, types: tuple[str, ...],
                  device: str | None, limit: int) -> list[LoggedEvent]:
    sql = ("SELECT id, type, device, data, created_at FROM events "
           "WHERE account_id = ? AND id > ?")
    params: list[Any] = [account_id, after]
    if types:
        sql += f" AND type IN ({', '.join(['?'] * len(types))})"
        params.extend(types)
    if device is not None:
        sql += " AND device = ?"
        params.append(device)
    rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit))
    return [_event(row) for row in rows]


def _last_event_id(conn: Connection) -> int:
    last: int = conn.execute("SELECT last_id FROM event_seq WHERE id = 1").fetchone()[0]
    return last


def _forget_before(conn: Connection, before: int, most: int) -> int:
    # The oldest `most` rows by id (the primary key's order), those among them older than
    # `before`: a short transaction however large the log.
    cursor = conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id "
                          "LIMIT ?) AND created_at < ?", (most, before))
    return cursor.rowcount


class SqlEvents(SqlPart):
    """The `EventStore` port."""

    async def record_event(self, token: str, kind: str, data: dict[str, Any], now: int) -> None:
        await self._writer.call(_record_by_token, token, kind, orjson.dumps(data).decode(), now)

    async def events_after(self, account_id: int, after: int, types: tuple[str, ...] = (),
                           device: str | None = None, limit: int = 500) -> list[LoggedEvent]:
        return await self._reader.call(_events_after, account_id, after, types, device, limit)

    async def last_event_id(self) -> int:
        return await self._reader.call(_last_event_id)

    async def forget_events(self, before: int, most: int) -> int:
        return await self._writer.call(_forget_before, before, most)
