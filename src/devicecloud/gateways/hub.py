"""The event router: this process's live connections and watchers, by device token.

One bus subscription serves them all. An event about a device goes to the subscribers of that
device only, and each turns it into its own protocol's bytes (an EzData push, an ESP-AI message,
a console page update). The first subscriber of a device makes the bus deliver other processes'
events about it here; the last one leaving stops that. Live device connections also count for
presence (`transports`). The hub also carries the process's metrics and limits to the connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from devicecloud.core.events import Change, Event, FieldChanged, PresenceChanged
from devicecloud.core.ports import Bus
from devicecloud.limits import Limits, limits_of
from devicecloud.metrics import Metrics


class Subscriber(Protocol):
    def deliver(self, event: Event) -> None:
        """Act on an event about the device (must not block)."""
        ...


class LiveConnection(Subscriber, Protocol):
    transport: str

    async def drain(self) -> None:
        """Refuse new requests; return once every request received so far is answered."""
        ...


class Hub:
    """Routes bus events to the subscribers of each device; knows the live connections."""

    def __init__(self, bus: Bus, metrics: Metrics | None = None,
                 limits: Limits | None = None) -> None:
        self._bus = bus
        self.metrics = metrics if metrics is not None else Metrics()
        self.limits = limits if limits is not None else limits_of(())
        self._routes: dict[str, set[Subscriber]] = {}
        self._live: dict[str, set[LiveConnection]] = {}
        self._unsubscribe = bus.subscribe(self._on_event)
        self.on_change: Callable[[str], None] | None = None

    # subscribers -----------------------------------------------------------------------------

    def route(self, token: str, subscriber: Subscriber) -> Callable[[], None]:
        """Deliver the device's events to `subscriber`; returns a function that stops it."""
        routes = self._routes.get(token)
        if routes is None:
            routes = self._routes[token] = set()
            self._bus.want(token)
        routes.add(subscriber)
        return lambda: self._unroute(token, subscriber)

    def _unroute(self, token: str, subscriber: Subscriber) -> None:
        routes = self._routes.get(token)
        if routes is None or subscriber not in routes:
            return
        routes.discard(subscriber)
        if not routes:
            del self._routes[token]
            self._bus.unwant(token)

    def routed(self) -> list[str]:
        """The devices something in this process subscribes to."""
        return list(self._routes)

    def deliver(self, token: str, event: Event) -> None:
        """Hand `event` to the device's subscribers here (not through the bus)."""
        for subscriber in tuple(self._routes.get(token, ())):
            subscriber.deliver(event)

    # live connections --------------------------------------------------------------------------

    def join(self, token: str, connection: LiveConnection, routed: bool = True) -> None:
        """Register a logged-in connection (receiving the device's events unless `routed` is
        False); the device's first one here makes it online."""
        live = self._live.setdefault(token, set())
        if connection in live:
            return
        live.add(connection)
        if routed:
            self.route(token, connection)
        if self.on_change is not None:
            self.on_change(token)
        if len(live) == 1:
            self._bus.publish(PresenceChanged(token, True, connection.transport))

    def leave(self, token: str, connection: LiveConnection) -> None:
        """Forget a connection; the device's last one leaving makes it offline here."""
        live = self._live.get(token)
        if live is None or connection not in live:
            return
        live.discard(connection)
        self._unroute(token, connection)
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

    def counts(self) -> dict[str, int]:
        """Live connections by transport."""
        counts: dict[str, int] = {}
        for live in self._live.values():
            for connection in live:
                counts[connection.transport] = counts.get(connection.transport, 0) + 1
        return counts

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
        routes = self._routes.get(event.device_token)
        if not routes:
            return
        if len(routes) == 1 and getattr(event, "origin", None) in routes:
            return  # the usual case: a device's own write, answered rather than pushed
        for subscriber in tuple(routes):
            subscriber.deliver(event)


def push_body(event: FieldChanged) -> dict[str, Any]:
    """The body of the push announcing `event`: the record, or for a file its URL."""
    field = event.field
    if event.change is Change.FILE:
        return {"deviceToken": event.device_token, "name": field.name, "value": field.value}
    return field.record()
