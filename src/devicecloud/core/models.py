"""The records devicecloud keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATA_TYPES = frozenset({"number", "string", "dict", "array", "file"})
_NUMBERS = (bool, int, float)
_DATA_TYPE_ALIASES = {"int": "number", "double": "number", "float": "number", "bool": "number",
                      "str": "string", "object": "dict", "list": "array", "json": "dict"}


@dataclass(slots=True)
class Device:
    id: int
    mac: str
    token: str
    device_type: str
    created_at: int
    updated_at: int
    last_seen_at: int | None = None
    owner_id: int | None = None
    downlink_limit: int | None = None


@dataclass(slots=True)
class Field:
    """One named data field of a device; `value` is any JSON value."""

    id: str
    data_token: str
    device_id: int
    name: str
    value: Any
    data_type: str
    permissions: str
    created_at: int
    updated_at: int

    def record(self, times_as_text: bool = False) -> dict[str, Any]:
        """The EzData data record (times as numbers, or as digit strings for the REST API)."""
        created: int | str = str(self.created_at) if times_as_text else self.created_at
        updated: int | str = str(self.updated_at) if times_as_text else self.updated_at
        return {"id": self.id, "dataToken": self.data_token, "name": self.name,
                "value": self.value, "dataType": self.data_type,
                "createTime": created, "updateTime": updated}


@dataclass(slots=True, frozen=True)
class HistoryEntry:
    value: Any
    data_type: str
    created_at: int


@dataclass(slots=True, frozen=True)
class StoredFile:
    id: str
    device_id: int
    field_name: str
    file_name: str
    content_type: str
    size: int
    created_at: int


def data_type_of(value: Any, declared: object = None) -> str:
    """The `dataType` of a value: the declared one if valid (old aliases mapped), else inferred.

    Booleans count as `number` (firmwares read them as 0/1); `null` counts as `string`.
    """
    if isinstance(declared, str) and declared:
        name = declared.strip().lower()
        name = _DATA_TYPE_ALIASES.get(name, name)
        if name in DATA_TYPES:
            return name
    if isinstance(value, _NUMBERS):  # a tuple: `bool | int | float` built a union per call
        return "number"
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, list):
        return "array"
    return "string"


def deduplicated_name(name: str, taken: set[str]) -> str:
    """`name` if free, else the first free `name(1)`, `name(2)`, ..."""
    if name not in taken:
        return name
    n = 1
    while f"{name}({n})" in taken:
        n += 1
    return f"{name}({n})"


@dataclass(slots=True)
class Account:
    """A person (or company) using the console and the management APIs."""

    id: int
    email: str
    display_name: str
    phone: str
    open_api_key: str
    created_at: int
