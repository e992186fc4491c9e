"""The live connections of this process, by device token, and the pushes the bus asks for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from devicecloud.core.events import Change, DeviceBound, Event, FieldChanged, PresenceChanged
from devicecloud.core.ports import Bus


class LiveConnection(Protocol):
    transport: str

    def push(self, key: str, cmd: int, body: Any, field: bool) -> None:
        """Queue push `cmd`; pushes with the same key coalesce. `field`: about one field, whose
        value is `body["value"]`."""
        ...

    async def drain(self) -> None:
        """Refuse new requests; return once every request received so far is answered."""
        ...


class Hub:
    """Knows which live connections this process holds for each device token."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._live: dict[str, set[LiveConnection]] = {}
        self._unsubscribe = bus.subscribe(self._on_event)
        self.on_change: Callable[[str], None] | None = None

    def join(self, token: str, connection: LiveConnection) -> None:
        """Register a logged-in connection; the device's first one makes it online."""
        live = self._live.setdefault(token, set())
        live.add(connection)
        if self.on_change is not None:
            self.on_change(token)
        if len(live) == 1:
            self._bus.publish(PresenceChanged(token, True, connection.transport))

    def leave(self, token: str, connection: LiveConnection) -> None:
        """Forget a connection; the device's last one leaving makes it offline."""
        live = self._live.get(token)
        if live is None or connection not in live:
            return
        live.discard(connection)
        if self.on_change is not None:
            self.on_change(token)
        if not live:
            del self._live[token]
            self._bus.publish(PresenceChanged(token, False, connection.transport))

    def connections(self, token: str) -> frozenset[LiveConnection]:
        return frozenset(self._live.get(token, ()))

    def transports(self, token: str) -> tuple[str, ...]:
        """How the device is connected to this process, e.g. `("mqtt", "websocket")`."""
        return tuple(sorted({c.transport for c in self._live.get(token, ())}))

    def tokens(self) -> list[str]:
        """The devices with a live connection to this process."""
        return list(self._live)

    async def drain(self) -> None:
        """Let every live connection answer what it has received (used when stopping)."""
        everyone = {c for live in self._live.values() for c in live}
        await asyncio.gather(*(c.drain() for c in everyone), return_exceptions=True)

    def close(self) -> None:
        self._unsubscribe()

    def _on_event(self, event: Event) -> None:
        live = self._live.get(getattr(event, "device_token", ""))
        if not live or (len(live) == 1 and getattr(event, "origin", None) in live):
            return  # nobody here to tell (the usual case: a device's own write)
        found = push_for(event)
        if found is None:
            return
        _, origin, push = found
        for connection in tuple(live):
            if connection is not origin:
                connection.push(*push)


Push = tuple[str, int, Any, bool]


def push_for(event: Event) -> tuple[str, object, Push] | None:
    """(device token, originating connection, push arguments) for events devices are told of."""
    if isinstance(event, FieldChanged):
        push = (event.field.name, event.change.value, push_body(event), True)
        return event.device_token, event.origin, push
    if isinstance(event, DeviceBound):
        body = {"deviceToken": event.device_token, "userName": event.display_name}
        return event.device_token, None, ("\0bound", 106, body, False)
    return None


def push_body(event: FieldChanged) -> dict[str, Any]:
    """The body of the push announcing `event`: the record, or for a file its URL."""
    field = event.field
    if event.change is Change.FILE:
        return {"deviceToken": event.device_token, "name": field.name, "value": field.value}
    return field.record()
