"""The records of the ESP-AI device management API: agents, firmware images, device rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The device record's text columns a third party may change with `/devices/update`, with the
# longest value each may hold.
UPDATABLE: dict[str, int] = {
    "name": 128, "version": 64, "enable": 1, "wifi_ssid": 64, "wifi_pwd": 128, "net_ip": 64,
    "bin_id": 64, "nation": 64, "province": 64, "city": 64, "longitude": 32, "latitude": 32,
}
# What the firmware reports itself (`/devices/add`, `upload_device_info`).
REPORTED: dict[str, int] = {key: UPDATABLE[key] for key in (
    "version", "bin_id", "wifi_ssid", "wifi_pwd", "net_ip", "nation", "province", "city",
    "latitude", "longitude")}
# Every text column of the record kept on the `devices` row.
TEXT_COLUMNS = ("name", "enable", "type", "wifi_ssid", "wifi_pwd", "net_ip", "version", "bin_id",
                "nation", "province", "city", "latitude", "longitude", "memory", "ext1", "ext2",
                "ext3")


@dataclass(slots=True)
class Agent:
    """An account's AI profile ("超体"); devices typed with its `api_key` are bound to it."""

    id: str
    account_id: int
    name: str
    api_key: str
    server_url: str
    created_at: int
    updated_at: int


@dataclass(slots=True, frozen=True)
class Firmware:
    """One uploaded firmware image; the newest image of a `bin_id` is the one devices get."""

    id: str
    account_id: int
    bin_id: str
    version: str
    file_name: str
    size: int
    created_at: int


@dataclass(slots=True)
class EspAiDevice:
    """A device row as the ESP-AI API sees it (the same row EzData sees by its token)."""

    row_id: int
    public_id: str
    token: str
    mac: str
    owner_id: int | None
    agent_id: str | None
    api_key: str | None
    created_at: int
    updated_at: int
    sort: int | None = None
    battery: int | None = None
    local_data: dict[str, Any] | None = None
    text: dict[str, str | None] = field(default_factory=dict)
    user_name: str = ""
    user_phone: str = ""
    mask_wifi_pwd: bool = False

    @property
    def device_id(self) -> str:
        """The MAC as ESP-AI spells it: `FC:01:2C:DB:14:30`."""
        return ":".join(self.mac[i:i + 2] for i in range(0, 12, 2)).upper()


@dataclass(slots=True, frozen=True)
class DeviceQuery:
    """Filters of `/devices/list`: exact matches, `name` a substring, `online` by live tokens."""

    owner_id: int
    exact: dict[str, str]
    name: str | None = None
    api_key: str | None = None
    mac: str | None = None
    online: bool | None = None
    online_tokens: tuple[str, ...] = ()
    limit: int = 9999
    offset: int = 0
