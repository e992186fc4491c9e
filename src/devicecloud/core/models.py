"""The records devicecloud keeps, and what a JSON value from a client may be."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from devicecloud.core.errors import InvalidRequest

MAX_DEPTH = 32
"""The deepest a stored value may nest: `[[1]]` is 2 deep. Every reply wraps a value in a few
more levels, and the JSON encoder stops at 255."""
MAX_DOCUMENT_DEPTH = MAX_DEPTH + 8
"""The deepest a parsed message may nest: a value at `MAX_DEPTH` plus its envelope."""
SMALLEST_INT = -(2**63)
LARGEST_INT = 2**64 - 1
"""JSON integers are kept exactly from `SMALLEST_INT` to `LARGEST_INT` (what the encoder can
write); beyond that a number is refused, never turned into an approximate float."""
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
_NINETEEN_DIGITS = b"9" * 19  # the shortest integer that may not fit in 64 bits has 19 digits

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
    release_requested_at: int | None = None  # a release asked for by token, awaiting the owner


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


def encode_value(value: Any, what: str = "value", limit: int = MAX_DEPTH) -> bytes:
    """The JSON encoding of a value devicecloud can keep and send again: nested at most `limit`
    deep, integers within 64 bits; else InvalidRequest naming `what`."""
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as problem:  # beyond 64 bits, nested past 255, not JSON
        if "Integer" in str(problem):
            raise _beyond_64_bits(what) from None
        if "Recursion" in str(problem):
            raise InvalidRequest(f"{what} nested deeper than {limit} levels") from None
        raise InvalidRequest(f"{what} is not JSON: {problem}") from None
    _check_depth(value, encoded, what, limit)
    return encoded


def _check_depth(doc: Any, encoded: bytes | str, what: str, limit: int) -> None:
    """InvalidRequest if `doc` nests deeper than `limit`; its JSON text counts the brackets that
    bound the depth, so only a document with more than `limit` of them is walked."""
    if isinstance(encoded, str):
        brackets = encoded.count("[") + encoded.count("{")
    else:
        brackets = encoded.count(b"[") + encoded.count(b"{")
    if brackets <= limit:
        return
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise InvalidRequest(f"{what} nested deeper than {limit} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _beyond_64_bits(what: str) -> InvalidRequest:
    return InvalidRequest(f"{what}: integer beyond 64 bits (from {SMALLEST_INT} to "
                          f"{LARGEST_INT}); send larger numbers as strings")


def _exact_int(text: str) -> int:
    number = int(text)
    if not SMALLEST_INT <= number <= LARGEST_INT:
        raise ValueError(text)
    return number


def loads(data: bytes | str) -> Any:
    """Parse JSON from a client: orjson.JSONDecodeError if it is not JSON, InvalidRequest if it
    nests deeper than `MAX_DOCUMENT_DEPTH` or holds an integer beyond 64 bits (which orjson would
    silently turn into a float)."""
    doc = orjson.loads(data)
    if isinstance(doc, dict | list):
        _check_depth(doc, data, "JSON", MAX_DOCUMENT_DEPTH)
    raw = data.encode() if isinstance(data, str) else data
    if _NINETEEN_DIGITS in raw.translate(_DIGITS_AS_NINES):  # rare: read the numbers exactly
        try:
            json.loads(data, parse_int=_exact_int)
        except ValueError:  # also more digits than Python converts
            raise _beyond_64_bits("JSON") from None
    return doc


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
    session_epoch: str = ""  # console sessions made under another epoch are over
