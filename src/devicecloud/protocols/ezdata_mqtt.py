"""EzData over MQTT: the topics, what a device may publish and subscribe to, the client id it
must use, and the size of a push and of any downlink."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from devicecloud.core.models import Field
from devicecloud.protocols.ezdata import Command

UP_FILTER = "$ezdata/+/up"  # every device's up topic: what a server behind a broker takes
DOWNLINK_LIMIT = 4096  # the largest PUBLISH frame (header included) sent to a device


def up_topic(token: str) -> str:
    return f"$ezdata/{token}/up"


def down_topic(token: str) -> str:
    return f"$ezdata/{token}/down"


def up_token(topic: str) -> str | None:
    """The token of the device whose up topic `topic` is, or None if it is no up topic."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "$ezdata" and parts[2] == "up":
        return parts[1]
    return None


@dataclass(frozen=True, slots=True)
class DeviceAcl:
    """What the holder of a device token may do: publish to its up topic and subscribe to its
    down topic, both named exactly (no wildcard filter reaches them)."""

    publish: str
    subscribe: str

    @classmethod
    def of(cls, token: str) -> DeviceAcl:
        return cls(up_topic(token), down_topic(token))

    def may_publish(self, topic: str) -> bool:
        return topic == self.publish

    def may_subscribe(self, topic_filter: str) -> bool:
        return topic_filter == self.subscribe

    def allows(self, action: str, topic: str) -> bool:
        """`action` is "publish" or "subscribe" (the broker hooks' words); others are refused."""
        if action == "publish":
            return self.may_publish(topic)
        return action == "subscribe" and self.may_subscribe(topic)


def client_id_matches(client_id: str, mac: str) -> bool:
    """`ez{mac}ez` or `m5{mac}m5`, the MAC compared case-insensitively."""
    return client_id.lower() in (f"ez{mac}ez", f"m5{mac}m5")


def _push_frame_size(token: str, name: str, value: object) -> int:
    """The exact size of the PUBLISH announcing field `name` = `value` (see `push_size`)."""
    record = Field("0" * 32, "0" * 32, 0, name, value, "string", "0", 10**13, 10**13)
    envelope = {"body": record.record(), "cmd": Command.MODIFIED, "code": 200, "msg": "OK",
                "value": value}
    return 5 + len(down_topic(token)) + len(orjson.dumps(envelope))


# A push's size is a constant, plus the token's length, the name's JSON once and the value's JSON
# twice (in the record and at the top level): the hot path adds just those.
_PUSH_BASE = _push_frame_size("", "", None) - len(b'""') - 2 * len(b"null")


def push_size(token: str, name: str, encoded_value: bytes) -> int:
    """The size of the largest downlink a change of field `name` to a value (JSON-encoded)
    causes: an MQTT push (PUBLISH header, down topic, the record and the value again at the top
    level). The composition root gives this rule to the core (`DeviceCloud.downlink_size`)."""
    return _PUSH_BASE + len(token) + len(orjson.dumps(name)) + 2 * len(encoded_value)
