"""EzData over MQTT: the topics, the client id a device must use, and the size of a push."""

from __future__ import annotations

import orjson

from devicecloud.core.models import Field


def up_topic(token: str) -> str:
    return f"$ezdata/{token}/up"


def down_topic(token: str) -> str:
    return f"$ezdata/{token}/down"


def client_id_matches(client_id: str, mac: str) -> bool:
    """`ez{mac}ez` or `m5{mac}m5`, the MAC compared case-insensitively."""
    return client_id.lower() in (f"ez{mac}ez", f"m5{mac}m5")


def _push_frame_size(token: str, name: str, value: object) -> int:
    """The exact size of the PUBLISH announcing field `name` = `value` (see `push_size`)."""
    record = Field("0" * 32, "0" * 32, 0, name, value, "string", "0", 10**13, 10**13)
    envelope = {"body": record.record(), "cmd": 107, "code": 200, "msg": "OK", "value": value}
    return 5 + len(down_topic(token)) + len(orjson.dumps(envelope))


# A push's size is a constant, plus the token's length, the name's JSON once and the value's JSON
# twice (in the record and at the top level): the hot path adds just those.
_PUSH_BASE = _push_frame_size("", "", None) - len(b'""') - 2 * len(b"null")


def push_size(token: str, name: str, encoded_value: bytes) -> int:
    """The size of the largest downlink a change of field `name` to a value (JSON-encoded)
    causes: an MQTT push (PUBLISH header, down topic, the record and the value again at the top
    level). The composition root gives this rule to the core (`DeviceCloud.downlink_size`)."""
    return _PUSH_BASE + len(token) + len(orjson.dumps(name)) + 2 * len(encoded_value)
