"""Events to bytes and back, for buses that cross processes.

Every event type is a dataclass of plain values; a `FieldChanged` also carries a `Field` and a
`Change`. The originating connection (`origin`) is meaningful only in its own process and is not
sent: elsewhere every live connection of the device is pushed to.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import orjson

from devicecloud.core.events import Change, Event, FieldChanged
from devicecloud.core.models import Field

_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}


def encode(event: Event) -> bytes:
    return orjson.dumps(to_doc(event))


def to_doc(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict."""
    doc: dict[str, Any] = {"type": type(event).__name__}
    for item in dataclasses.fields(event):
        if item.name == "origin":
            continue
        value = getattr(event, item.name)
        if isinstance(value, Field):
            value = dataclasses.asdict(value)
        elif isinstance(value, Change):
            value = value.value
        doc[item.name] = value
    return doc


def decode(data: bytes) -> Event | None:
    """The event, or None for a message of a type this version does not know."""
    return from_doc(orjson.loads(data))


def from_doc(doc: dict[str, Any]) -> Event | None:
    """The event `to_doc` made, or None for a type this version does not know."""
    cls = _TYPES.get(doc.pop("type", None))
    if cls is None:
        return None
    if cls is FieldChanged:
        doc["field"] = Field(**doc["field"])
        doc["change"] = Change(doc["change"])
    event: Event = cls(**doc)
    return event
