"""Every event type crosses processes whole: `bus.codec` turns it into bytes and back."""

from __future__ import annotations

import typing

from devicecloud.bus.codec import decode, encode
from devicecloud.core.events import (
    Change,
    ConnectionClaimed,
    DeviceBound,
    DeviceDeleted,
    DeviceReleased,
    DeviceUpdated,
    EspAiMessage,
    Event,
    FieldChanged,
    PresenceChanged,
    ReleaseRequested,
)
from devicecloud.core.models import Field

TOKEN = "ab" * 16


def examples() -> list[Event]:
    field = Field("f" * 32, "d" * 32, 7, "temp", 21.5, "number", "0", 1, 2)
    return [FieldChanged(TOKEN, Change.MODIFIED, field, "device"), DeviceBound(TOKEN, 3, "Ada"),
            DeviceReleased(TOKEN), DeviceDeleted(TOKEN), ReleaseRequested(TOKEN, 3),
            DeviceUpdated(TOKEN, 4096), ConnectionClaimed(TOKEN, "mqtt:ez1ez", "p1"),
            PresenceChanged(TOKEN, True, "mqtt"), EspAiMessage(TOKEN, {"type": "play"})]


def test_every_event_type_comes_back_equal() -> None:
    made = examples()
    assert {type(event) for event in made} == set(typing.get_args(Event))
    for event in made:
        assert decode(encode(event)) == event
