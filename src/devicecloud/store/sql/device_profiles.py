"""Device profiles: a device's name, description and its owner's tags (`device_tags`), and pages
of an owner's devices filtered by them."""

from __future__ import annotations

from typing import Any

from devicecloud.core.device_profiles import DeviceProfile, ProfileChanges, ProfileQuery
from devicecloud.store.connection import Connection
from devicecloud.store.sql.base import SqlPart
from devicecloud.store.sql.devices import _DEVICE_COLUMNS, _device
from devicecloud.store.sql.espai import _escape_like, _marks

_PROFILE_COLUMNS = f"{_DEVICE_COLUMNS}, public_id, COALESCE(name, ''), description"
_DEVICE_WIDTH = len(_DEVICE_COLUMNS.split(","))
_MAC_SEPARATORS = str.maketrans("", "", ":-.")
_HEX = set("0123456789abcdef")


def _mac_part(text: str) -> str:
    """The MAC digits `text` may be a piece of (`AA:BB`, `aa-bb`, `aabb`), or "" if none."""
    digits = text.strip().lower().translate(_MAC_SEPARATORS)
    return digits if digits and set(digits) <= _HEX else ""


def _profiles(conn: Connection, rows: list[tuple[Any, ...]]) -> list[DeviceProfile]:
    found = {row[0]: DeviceProfile(_device(row[:_DEVICE_WIDTH]), *row[_DEVICE_WIDTH:])
             for row in rows}
    if found:
        tags = conn.execute(f"SELECT device_id, tag FROM device_tags WHERE device_id IN "
                            f"({_marks(found)}) ORDER BY device_id, tag", tuple(found))
        for device_id, tag in tags:
            found[device_id].tags.append(tag)
    return list(found.values())


def _device_profiles(conn: Connection, query: ProfileQuery) -> list[DeviceProfile]:
    where = ["owner_id = ?", "id > ?"]
    args: list[object] = [query.owner_id, query.after]
    if query.text:
        like = ["lower(COALESCE(name, '')) LIKE lower(?) ESCAPE '\\'"]
        args.append(f"%{_escape_like(query.text)}%")
        mac = _mac_part(query.text)
        if mac:
            like.append("mac LIKE ?")
            args.append(f"%{mac}%")
        where.append(f"({' OR '.join(like)})")
    if query.tag is not None:
        where.append("EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id "
                     "AND t.tag = ?)")
        args.append(query.tag)
    rows = conn.execute(f"SELECT {_PROFILE_COLUMNS} FROM devices WHERE {' AND '.join(where)} "
                        "ORDER BY id LIMIT ?", (*args, query.limit)).fetchall()
    return _profiles(conn, rows)


def _device_profile(conn: Connection, owner_id: int, column: str,
                    value: object) -> DeviceProfile | None:
    rows = conn.execute(f"SELECT {_PROFILE_COLUMNS} FROM devices WHERE owner_id = ? AND "
                        f"{column} = ?", (owner_id, value)).fetchall()
    found = _profiles(conn, rows)
    return found[0] if found else None


def _change_device_profile(conn: Connection, device_id: int, owner_id: int,
                           changes: ProfileChanges, now: int) -> bool:
    columns: dict[str, str | None] = dict(changes.columns)
    if "name" in columns:
        columns["name"] = columns["name"] or None  # unnamed, as a device that never was named
    assignments = "".join(f"{column} = ?, " for column in columns)
    cursor = conn.execute(f"UPDATE devices SET {assignments}updated_at = ? WHERE id = ? AND "
                          "owner_id = ?", (*columns.values(), now, device_id, owner_id))
    if cursor.rowcount != 1:
        return False
    if changes.tags is not None:
        conn.execute("DELETE FROM device_tags WHERE device_id = ?", (device_id,))
        for tag in changes.tags:
            conn.execute("INSERT INTO device_tags (device_id, tag) VALUES (?, ?)",
                         (device_id, tag))
    return True


class SqlDeviceProfiles(SqlPart):
    """The `DeviceProfileStore` port."""

    async def device_profiles(self, query: ProfileQuery) -> list[DeviceProfile]:
        return await self._reader.call(_device_profiles, query)

    async def device_profile(self, owner_id: int, public_id: str) -> DeviceProfile | None:
        return await self._reader.call(_device_profile, owner_id, "public_id", public_id)

    async def device_profile_of(self, owner_id: int, device_id: int) -> DeviceProfile | None:
        return await self._reader.call(_device_profile, owner_id, "id", device_id)

    async def change_device_profile(self, device_id: int, owner_id: int,
                                    changes: ProfileChanges, now: int) -> bool:
        return await self._writer.call(_change_device_profile, device_id, owner_id, changes,
                                       now)
