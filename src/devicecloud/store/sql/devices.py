"""Devices: registration, ownership (bind, release and release requests), pairing codes, the
downlink limit and when each was last seen."""

from __future__ import annotations

import secrets
from typing import Any

from devicecloud.core.events import DEVICE_BOUND, DEVICE_RELEASED
from devicecloud.core.models import Device
from devicecloud.store.connection import Connection
from devicecloud.store.sql.base import SqlPart
from devicecloud.store.sql.events import record_for

_DEVICE_COLUMNS = ("id, mac, token, device_type, created_at, updated_at, last_seen_at, owner_id, "
                   "downlink_limit, release_requested_at")


def _device(row: tuple[Any, ...]) -> Device:
    return Device(*row)


def _register_mac(conn: Connection, mac: str, device_type: str, token: str, now: int) -> Device:
    conn.execute("INSERT INTO devices (mac, token, device_type, created_at, updated_at, "
                 "last_seen_at, public_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mac) "
                 "DO UPDATE SET "
                 "device_type = CASE WHEN excluded.device_type != '' "
                 "THEN excluded.device_type ELSE devices.device_type END, "
                 "updated_at = excluded.updated_at, last_seen_at = excluded.updated_at",
                 (mac, token, device_type, now, now, now, secrets.token_hex(16)))
    row = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE mac = ?", (mac,)).fetchone()
    return _device(row)


def _device_by_token(conn: Connection, token: str) -> Device | None:
    row = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE token = ?",
                       (token,)).fetchone()
    return _device(row) if row else None


def _device_by_mac(conn: Connection, mac: str) -> Device | None:
    row = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE mac = ?", (mac,)).fetchone()
    return _device(row) if row else None


def _release_device(conn: Connection, device_id: int, owner_id: int, now: int) -> bool:
    # Only while `owner_id` owns it: a stale caller never undoes another account's bind. The
    # binding to the owner's ESP-AI agent ends with it.
    cursor = conn.execute("UPDATE devices SET owner_id = NULL, agent_id = NULL, updated_at = ?, "
                          "release_requested_at = NULL, release_refused_until = NULL "
                          "WHERE id = ? AND owner_id = ?", (now, device_id, owner_id))
    if cursor.rowcount != 1:
        return False
    record_for(conn, device_id, owner_id, DEVICE_RELEASED, "{}", now)
    return True


def _request_release(conn: Connection, device_id: int, owner_id: int, now: int) -> bool:
    # An earlier request keeps its time; one the owner refused is not renewed before the end of
    # the refusal.
    cursor = conn.execute("UPDATE devices SET release_requested_at = "
                          "COALESCE(release_requested_at, ?) WHERE id = ? AND owner_id = ? AND "
                          "(release_refused_until IS NULL OR release_refused_until <= ?)",
                          (now, device_id, owner_id, now))
    return cursor.rowcount == 1


def _refuse_release(conn: Connection, device_id: int, owner_id: int, until: int) -> bool:
    cursor = conn.execute("UPDATE devices SET release_requested_at = NULL, "
                          "release_refused_until = ? WHERE id = ? AND owner_id = ?",
                          (until, device_id, owner_id))
    return cursor.rowcount == 1


def _release_due(conn: Connection, asked_before: int, now: int) -> list[str]:
    # Each row is released once, whichever process sweeps first (the owner it had is told).
    due = conn.execute("SELECT id, owner_id, token FROM devices WHERE release_requested_at <= ?",
                       (asked_before,)).fetchall()
    released = []
    for device_id, owner_id, token in due:
        cursor = conn.execute("UPDATE devices SET owner_id = NULL, agent_id = NULL, "
                              "updated_at = ?, release_requested_at = NULL WHERE id = ? AND "
                              "owner_id = ? AND release_requested_at <= ?",
                              (now, device_id, owner_id, asked_before))
        if cursor.rowcount == 1:
            record_for(conn, device_id, owner_id, DEVICE_RELEASED, "{}", now)
            released.append(token)
    return released


def _bind_device(conn: Connection, device_id: int, owner_id: int, now: int) -> bool:
    # A bind by the owner it has already is no news.
    before = conn.execute("SELECT owner_id FROM devices WHERE id = ?", (device_id,)).fetchone()
    cursor = conn.execute("UPDATE devices SET owner_id = ?, updated_at = ?, "
                          "release_requested_at = NULL, release_refused_until = CASE WHEN "
                          "owner_id = ? THEN release_refused_until END "
                          "WHERE id = ? AND (owner_id IS NULL OR owner_id = ?)",
                          (owner_id, now, owner_id, device_id, owner_id))
    if cursor.rowcount != 1:
        return False
    if before is not None and before[0] != owner_id:
        owner_changed(conn, device_id, owner_id, now)
    return True


def owner_changed(conn: Connection, device_id: int, owner_id: int, now: int) -> None:
    """In the bind's transaction: the new owner starts without what an earlier one wrote about
    the device, and is told `device.bound`."""
    conn.execute("UPDATE devices SET description = '' WHERE id = ?", (device_id,))
    conn.execute("DELETE FROM device_tags WHERE device_id = ?", (device_id,))
    record_for(conn, device_id, owner_id, DEVICE_BOUND, "{}", now)


def _delete_device(conn: Connection, device_id: int, owner_id: int, now: int) -> list[str] | None:
    """Delete the device with its fields, history, files, pairing code and tags if `owner_id`
    owns it (None otherwise); the ids of its files, whose blobs go after the commit. Its owner
    is told `device.released`; the account's earlier events of it stay."""
    owned = conn.execute("SELECT 1 FROM devices WHERE id = ? AND owner_id = ?",
                         (device_id, owner_id)).fetchone()
    if owned is None:
        return None
    record_for(conn, device_id, owner_id, DEVICE_RELEASED, "{}", now)
    files = [row[0] for row in conn.execute("SELECT id FROM files WHERE device_id = ?",
                                            (device_id,))]
    for table in ("field_history", "field_units"):
        conn.execute(f"DELETE FROM {table} WHERE field_id IN "
                     "(SELECT id FROM fields WHERE device_id = ?)", (device_id,))
    for table in ("fields", "files", "pair_codes", "device_tags"):
        conn.execute(f"DELETE FROM {table} WHERE device_id = ?", (device_id,))
    conn.execute("DELETE FROM devices WHERE id = ?", (device_id,))
    return files


def _devices_of(conn: Connection, owner_id: int) -> list[Device]:
    rows = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE owner_id = ? ORDER BY id",
                        (owner_id,))
    return [_device(row) for row in rows]


def _set_downlink_limit(conn: Connection, device_id: int, limit: int | None) -> None:
    conn.execute("UPDATE devices SET downlink_limit = ? WHERE id = ?", (limit, device_id))


def _touch(conn: Connection, device_id: int, now: int) -> None:
    conn.execute("UPDATE devices SET last_seen_at = ? WHERE id = ?", (now, device_id))


def _put_pair_code(conn: Connection, code: str, device_id: int, expires_at: int,
                   now: int) -> bool:
    conn.execute("DELETE FROM pair_codes WHERE expires_at <= ? OR device_id = ?",
                 (now, device_id))
    cursor = conn.execute("INSERT INTO pair_codes (code, device_id, expires_at) VALUES (?, ?, ?) "
                          "ON CONFLICT (code) DO NOTHING", (code, device_id, expires_at))
    return cursor.rowcount == 1


def _take_pair_code(conn: Connection, code: str, now: int) -> str | None:
    row = conn.execute("DELETE FROM pair_codes WHERE code = ? RETURNING device_id, expires_at",
                       (code,)).fetchone()
    if row is None or row[1] <= now:
        return None
    found = conn.execute("SELECT token FROM devices WHERE id = ?", (row[0],)).fetchone()
    return found[0] if found else None


class SqlDevices(SqlPart):
    """The `DeviceStore` port."""

    async def register_mac(self, mac: str, device_type: str, token: str, now: int) -> Device:
        return await self._writer.call(_register_mac, mac, device_type, token, now)

    async def device_by_token(self, token: str) -> Device | None:
        return await self._reader.call(_device_by_token, token)

    async def device_by_mac(self, mac: str) -> Device | None:
        return await self._reader.call(_device_by_mac, mac)

    async def request_release(self, device_id: int, owner_id: int, now: int) -> bool:
        return await self._writer.call(_request_release, device_id, owner_id, now)

    async def refuse_release(self, device_id: int, owner_id: int, until: int) -> bool:
        return await self._writer.call(_refuse_release, device_id, owner_id, until)

    async def release_due(self, asked_before: int, now: int) -> list[str]:
        return await self._writer.call(_release_due, asked_before, now)

    async def release_device(self, device_id: int, owner_id: int, now: int) -> bool:
        return await self._writer.call(_release_device, device_id, owner_id, now)

    async def delete_device(self, device_id: int, owner_id: int, now: int) -> list[str] | None:
        return await self._writer.call(_delete_device, device_id, owner_id, now)

    async def bind_device(self, device_id: int, owner_id: int, now: int) -> bool:
        return await self._writer.call(_bind_device, device_id, owner_id, now)

    async def devices_of(self, owner_id: int) -> list[Device]:
        return await self._reader.call(_devices_of, owner_id)

    async def set_downlink_limit(self, device_id: int, limit: int | None) -> None:
        await self._writer.call(_set_downlink_limit, device_id, limit)

    async def touch(self, device_id: int, now: int) -> None:
        await self._writer.call(_touch, device_id, now)

    async def put_pair_code(self, code: str, device_id: int, expires_at: int, now: int) -> bool:
        return await self._writer.call(_put_pair_code, code, device_id, expires_at, now)

    async def take_pair_code(self, code: str, now: int) -> str | None:
        return await self._writer.call(_take_pair_code, code, now)
