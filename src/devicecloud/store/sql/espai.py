"""The ESP-AI API's records: agents, the device records of accounts, firmware images."""

from __future__ import annotations

import secrets
from collections.abc import Sized
from typing import Any

import orjson

from devicecloud.core.espai.models import TEXT_COLUMNS, Agent, DeviceQuery, EspAiDevice, Firmware
from devicecloud.core.events import DEVICE_RELEASED
from devicecloud.store.connection import Connection
from devicecloud.store.sql.base import SqlPart
from devicecloud.store.sql.columns import savepoint, update_columns
from devicecloud.store.sql.devices import owner_changed
from devicecloud.store.sql.events import record_for

_AGENT_COLUMNS = "id, account_id, name, api_key, server_url, created_at, updated_at"
_AGENT_CHANGES = frozenset({"name", "api_key", "server_url"})
_FIRMWARE_COLUMNS = "id, account_id, bin_id, version, file_name, size, created_at"
_RECORD_FROM = (
    "SELECT d.id, d.public_id, d.token, d.mac, d.owner_id, d.agent_id, a.api_key, d.created_at, "
    "d.updated_at, d.sort, d.battery, d.local_data, "
    + ", ".join(f"d.{column}" for column in TEXT_COLUMNS)
    + ", COALESCE(u.display_name, ''), COALESCE(u.phone, ''), COALESCE(u.mask_wifi_pwd, 0) "
    "FROM devices d LEFT JOIN agents a ON a.id = d.agent_id "
    "LEFT JOIN accounts u ON u.id = d.owner_id "
)
_DEVICE_CHANGES = frozenset({*TEXT_COLUMNS, "battery", "sort", "local_data"})


def _record(row: tuple[Any, ...]) -> EspAiDevice:
    texts = row[12:12 + len(TEXT_COLUMNS)]
    user_name, user_phone, mask = row[12 + len(TEXT_COLUMNS):]
    return EspAiDevice(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
        orjson.loads(row[11]) if row[11] else None, dict(zip(TEXT_COLUMNS, texts, strict=True)),
        user_name, user_phone, bool(mask))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _marks(values: Sized) -> str:
    """`?, ?, ...`: one placeholder per value."""
    return ", ".join(["?"] * len(values))


def _record_where(conn: Connection, where: str, *args: Any) -> EspAiDevice | None:
    row = conn.execute(f"{_RECORD_FROM} WHERE {where}", args).fetchone()
    return _record(row) if row else None


# Agents ------------------------------------------------------------------------------------------

def _create_agent(conn: Connection, agent: Agent) -> None:
    conn.execute(f"INSERT INTO agents ({_AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (agent.id, agent.account_id, agent.name, agent.api_key, agent.server_url,
                  agent.created_at, agent.updated_at))


def _agent_where(conn: Connection, column: str, value: object) -> Agent | None:
    row = conn.execute(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE {column} = ?",
                       (value,)).fetchone()
    return Agent(*row) if row else None


def _agents_of(conn: Connection, account_id: int) -> list[Agent]:
    rows = conn.execute(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE account_id = ? "
                        "ORDER BY created_at, id", (account_id,))
    return [Agent(*row) for row in rows]


def _delete_agent(conn: Connection, agent_id: str, now: int) -> list[str]:
    owner = conn.execute("SELECT account_id FROM agents WHERE id = ?", (agent_id,)).fetchone()
    released = conn.execute(
        "UPDATE devices SET owner_id = NULL, agent_id = NULL, updated_at = ? WHERE agent_id = ? "
        "RETURNING id, token", (now, agent_id)).fetchall()
    conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
    for device_id, _ in released if owner is not None else ():
        record_for(conn, device_id, owner[0], DEVICE_RELEASED, "{}", now)
    return [token for _, token in released]


# Device records ----------------------------------------------------------------------------------

def _espai_bind(conn: Connection, mac: str, token: str, agent: Agent,
                reported: dict[str, str], now: int) -> EspAiDevice | None:
    """Bind the MAC (a new device row if unknown) to the agent; None if another account has it.
    The owner condition is part of the update, so of two accounts binding at once (in two
    processes) exactly one wins: PostgreSQL re-checks it on the row the other just committed."""
    conn.execute("INSERT INTO devices (mac, token, device_type, created_at, updated_at, "
                 "public_id) VALUES (?, ?, 'esp-ai', ?, ?, ?) ON CONFLICT (mac) DO NOTHING",
                 (mac, token, now, now, secrets.token_hex(16)))
    assignments = "".join(f"{column} = ?, " for column in reported)
    before = conn.execute("SELECT owner_id FROM devices WHERE mac = ?", (mac,)).fetchone()
    row = conn.execute(
        f"UPDATE devices SET {assignments}owner_id = ?, agent_id = ?, updated_at = ?, "
        "last_seen_at = ?, public_id = COALESCE(public_id, ?) "
        "WHERE mac = ? AND (owner_id IS NULL OR owner_id = ?) RETURNING id",
        (*reported.values(), agent.account_id, agent.id, now, now, secrets.token_hex(16), mac,
         agent.account_id)).fetchone()
    if row is None:
        return None
    if before is None or before[0] != agent.account_id:
        owner_changed(conn, row[0], agent.account_id, now)
    return _record_where(conn, "d.id = ?", row[0])


def _espai_devices(conn: Connection,
                   query: DeviceQuery) -> tuple[list[EspAiDevice], int]:
    where = ["d.owner_id = ?"]
    args: list[Any] = [query.owner_id]
    for column, value in query.exact.items():
        if column not in TEXT_COLUMNS:
            raise ValueError(f"cannot filter on {column}")
        where.append(f"d.{column} = ?")
        args.append(value)
    if query.name is not None:
        where.append("lower(d.name) LIKE lower(?) ESCAPE '\\'")
        args.append(f"%{_escape_like(query.name)}%")
    if query.api_key is not None:
        where.append("a.api_key = ?")
        args.append(query.api_key)
    if query.mac is not None:
        where.append("d.mac = ?")
        args.append(query.mac)
    if query.online is not None and query.online_tokens:
        negation = "" if query.online else "NOT "
        where.append(f"d.token {negation}IN ({_marks(query.online_tokens)})")
        args.extend(query.online_tokens)
    elif query.online:
        where.append("1 = 0")  # nothing is online
    condition = " AND ".join(where)
    total = conn.execute(f"SELECT COUNT(*) FROM devices d LEFT JOIN agents a ON a.id = d.agent_id "
                         f"WHERE {condition}", args).fetchone()[0]
    rows = conn.execute(f"{_RECORD_FROM} WHERE {condition} ORDER BY d.id LIMIT ? OFFSET ?",
                        (*args, query.limit, query.offset))
    return [_record(row) for row in rows], total


def _espai_update(conn: Connection, row_id: int, changes: dict[str, Any],
                  now: int | None) -> None:
    if not changes.keys() <= _DEVICE_CHANGES:
        raise ValueError(f"cannot change {sorted(changes.keys() - _DEVICE_CHANGES)}")
    values = [orjson.dumps(value).decode() if column == "local_data" else value
              for column, value in changes.items()]
    assignments = ", ".join(f"{column} = ?" for column in changes)
    if now is not None:
        assignments += ", updated_at = ?"
        values.append(now)
    if assignments:
        conn.execute(f"UPDATE devices SET {assignments} WHERE id = ?", (*values, row_id))


def _espai_release(conn: Connection, owner_id: int, public_ids: list[str],
                   now: int) -> list[str] | None:
    """Unbind all those devices of the account, or none if any is not one of its devices (then
    the savepoint undoes those it had unbound: the owner condition is in the update itself)."""
    wanted = sorted(set(public_ids))
    with savepoint(conn) as undo:
        released = conn.execute(
            f"UPDATE devices SET owner_id = NULL, agent_id = NULL, updated_at = ? "
            f"WHERE owner_id = ? AND public_id IN ({_marks(wanted)}) RETURNING id, token",
            (now, owner_id, *wanted)).fetchall()
        if len(released) != len(wanted):
            undo()
            return None
    for device_id, _ in released:
        record_for(conn, device_id, owner_id, DEVICE_RELEASED, "{}", now)
    return [token for _, token in released]


def _set_mask_wifi_pwd(conn: Connection, account_id: int, on: bool) -> None:
    conn.execute("UPDATE accounts SET mask_wifi_pwd = ? WHERE id = ?", (int(on), account_id))


def _mask_wifi_pwd(conn: Connection, account_id: int) -> bool:
    row = conn.execute("SELECT mask_wifi_pwd FROM accounts WHERE id = ?",
                       (account_id,)).fetchone()
    return bool(row and row[0])


# Firmware ----------------------------------------------------------------------------------------

def _add_firmware(conn: Connection, image: Firmware) -> str | None:
    """Keep the image's record; "exists" if the account has that version of the bin_id."""
    cursor = conn.execute(
        f"INSERT INTO firmware ({_FIRMWARE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (account_id, bin_id, version) DO NOTHING",
        (image.id, image.account_id, image.bin_id, image.version, image.file_name, image.size,
         image.created_at))
    return None if cursor.rowcount == 1 else "exists"


def _firmware_devices_at(conn: Connection, address: str) -> list[tuple[str, str, int, int]]:
    """(token, mac, owner id, last seen) of the bound devices whose last firmware socket came
    from `address`."""
    rows = conn.execute("SELECT token, mac, owner_id, COALESCE(last_seen_at, 0) FROM devices "
                        "WHERE firmware_addr = ? AND owner_id IS NOT NULL", (address,))
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def _firmware_where(conn: Connection, where: str, *args: Any) -> list[Firmware]:
    rows = conn.execute(f"SELECT {_FIRMWARE_COLUMNS} FROM firmware WHERE {where}", args)
    return [Firmware(*row) for row in rows]


def _delete_firmware(conn: Connection, account_id: int,
                     firmware_id: str) -> Firmware | None:
    row = conn.execute(f"DELETE FROM firmware WHERE id = ? AND account_id = ? "
                       f"RETURNING {_FIRMWARE_COLUMNS}", (firmware_id, account_id)).fetchone()
    return Firmware(*row) if row else None


def _set_firmware_address(conn: Connection, row_id: int, address: str) -> None:
    conn.execute("UPDATE devices SET firmware_addr = ? WHERE id = ? "
                 "AND (firmware_addr IS NULL OR firmware_addr <> ?)", (address, row_id, address))


class SqlEspAi(SqlPart):
    """The `EspAiStore` port."""

    async def create_agent(self, agent: Agent) -> None:
        await self._writer.call(_create_agent, agent)

    async def agent_by_id(self, agent_id: str) -> Agent | None:
        return await self._reader.call(_agent_where, "id", agent_id)

    async def agent_by_api_key(self, api_key: str) -> Agent | None:
        return await self._reader.call(_agent_where, "api_key", api_key)

    async def agents_of(self, account_id: int) -> list[Agent]:
        return await self._reader.call(_agents_of, account_id)

    async def update_agent(self, agent_id: str, changes: dict[str, str], now: int) -> None:
        await self._writer.call(update_columns, "agents", _AGENT_CHANGES, agent_id, changes,
                                now)

    async def delete_agent(self, agent_id: str, now: int) -> list[str]:
        return await self._writer.call(_delete_agent, agent_id, now)

    async def espai_bind(self, mac: str, token: str, agent: Agent, reported: dict[str, str],
                         now: int) -> EspAiDevice | None:
        return await self._writer.call(_espai_bind, mac, token, agent, reported, now)

    async def espai_devices(self, query: DeviceQuery) -> tuple[list[EspAiDevice], int]:
        return await self._reader.call(_espai_devices, query)

    async def espai_device(self, owner_id: int, public_id: str) -> EspAiDevice | None:
        return await self._reader.call(_record_where, "d.owner_id = ? AND d.public_id = ?",
                                       owner_id, public_id)

    async def espai_device_by_mac(self, mac: str) -> EspAiDevice | None:
        return await self._reader.call(_record_where, "d.mac = ?", mac)

    async def espai_update(self, row_id: int, changes: dict[str, Any], now: int | None) -> None:
        await self._writer.call(_espai_update, row_id, changes, now)

    async def espai_release(self, owner_id: int, public_ids: list[str],
                            now: int) -> list[str] | None:
        return await self._writer.call(_espai_release, owner_id, public_ids, now)

    async def set_mask_wifi_pwd(self, account_id: int, on: bool) -> None:
        await self._writer.call(_set_mask_wifi_pwd, account_id, on)

    async def mask_wifi_pwd(self, account_id: int) -> bool:
        return await self._reader.call(_mask_wifi_pwd, account_id)

    async def set_firmware_address(self, row_id: int, address: str) -> None:
        await self._writer.call(_set_firmware_address, row_id, address)

    async def firmware_devices_at(self, address: str) -> list[tuple[str, str, int, int]]:
        return await self._reader.call(_firmware_devices_at, address)

    async def add_firmware(self, image: Firmware) -> str | None:
        return await self._writer.call(_add_firmware, image)

    async def firmware_of(self, account_id: int) -> list[Firmware]:
        return await self._writer.call(_firmware_where, "account_id = ? ORDER BY created_at, id",
                                       account_id)

    async def latest_firmware(self, account_id: int, bin_id: str) -> Firmware | None:
        found = await self._writer.call(
            _firmware_where,
            "account_id = ? AND bin_id = ? ORDER BY created_at DESC, id DESC LIMIT 1",
            account_id, bin_id)
        return found[0] if found else None

    async def get_firmware(self, firmware_id: str) -> Firmware | None:
        found = await self._writer.call(_firmware_where, "id = ?", firmware_id)
        return found[0] if found else None

    async def delete_firmware(self, account_id: int, firmware_id: str) -> Firmware | None:
        return await self._writer.call(_delete_firmware, account_id, firmware_id)
