"""Presence from a broker's own announcements: Mosquitto's `$SYS/broker/log/N` notice lines
(with `log_dest topic`) and EMQX's `$SYS/brokers/<node>/clients/<id>/(dis)connected` events."""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

SUBSCRIPTIONS = ("$SYS/broker/log/N", "$SYS/brokers/+/clients/+/connected",
                 "$SYS/brokers/+/clients/+/disconnected")
_CONNECTED = re.compile(r"New client connected from \S+ as (\S+) \(.*?u'([^']*)'\)")
_GONE = re.compile(r"(?:Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)"
                   r"|Socket error on client (\S+), disconnecting)")
_EMQX = re.compile(r"\$SYS/brokers/[^/]+/clients/([^/]+)/(connected|disconnected)")


@dataclass(slots=True, frozen=True)
class ClientEvent:
    """A client came (with its username, if the broker said) or went."""

    client_id: str
    online: bool
    username: str | None = None


def parse(topic: str, payload: bytes) -> ClientEvent | None:
    """The presence event in one broker message, or None if it is about something else."""
    if topic == "$SYS/broker/log/N":
        text = payload.decode("utf-8", "replace")
        if found := _CONNECTED.search(text):
            return ClientEvent(found[1], True, found[2])
        if found := _GONE.search(text):
            return ClientEvent((found[1] or found[2]).rstrip("."), False)
        return None
    if found := _EMQX.fullmatch(topic):
        username = None
        try:
            doc = orjson.loads(payload)
            username = doc.get("username") if isinstance(doc, dict) else None
        except orjson.JSONDecodeError:
            pass
        return ClientEvent(found[1], found[2] == "connected",
                           username if isinstance(username, str) else None)
    return None
