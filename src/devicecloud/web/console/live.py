"""Live console pages: the events about one device, sent to the browser over a WebSocket.

Each page watching a device is a subscriber of the hub with a bounded queue. A page that falls
behind gets a fresh snapshot instead of the backlog. Whether the visitor still owns the device
is read from the database with every status update, so a page closes within
`STATUS_EVERY_SECONDS` of a release made anywhere, even if the release's event never came.

The device list watches every device of the account the same way (`serve_fleet`): it is told
when one connects, disconnects or changes a field, and gets every device's status again every
`STATUS_EVERY_SECONDS`, which also drops the devices that left the account.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterator
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from devicecloud.core.events import (
    DeviceBound,
    DeviceReleased,
    Event,
    FieldChanged,
    PresenceChanged,
)
from devicecloud.gateways.hub import Hub

QUEUE_LIMIT = 512
STATUS_EVERY_SECONDS = 5.0

Snapshot = Callable[[], Awaitable[dict[str, Any]]]
Status = Callable[[], Awaitable[dict[str, Any] | None]]  # None: the visitor lost the device
Statuses = Callable[[], Awaitable[dict[str, dict[str, Any]]]]  # by token, of the owned devices
DeviceStatusOf = Callable[[str], Awaitable[dict[str, Any]]]


class Watcher:
    """The events waiting for one console page."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self.behind = False

    def deliver(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.behind = True

    def caught_up(self) -> bool:
        """If the page fell behind: drop the backlog (it gets a fresh snapshot) and say so."""
        if not self.behind:
            return False
        self.behind = False
        while not self.queue.empty():
            self.queue.get_nowait()
        return True


class LiveFeeds:
    """The console pages watching each device, as subscribers of the hub."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    @contextlib.contextmanager
    def watch(self, token: str) -> Iterator[Watcher]:
        watcher = Watcher()
        stop = self._hub.route(token, watcher)
        try:
            yield watcher
        finally:
            stop()

    @contextlib.contextmanager
    def watch_all(self, tokens: Collection[str]) -> Iterator[Watcher]:
        """One watcher of the events about any of these devices."""
        watcher = Watcher()
        stops = [self._hub.route(token, watcher) for token in tokens]
        try:
            yield watcher
        finally:
            for stop in stops:
                stop()


def field_message(event: FieldChanged) -> dict[str, Any]:
    return {"type": "field", "change": event.change.name.lower(), "source": event.source,
            "record": event.field.record()}


def _left(event: Event, account_id: int) -> bool:
    """Whether the event takes its device away from the account."""
    return isinstance(event, DeviceReleased) or (
        isinstance(event, DeviceBound) and event.account_id != account_id)


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


async def _events(websocket: WebSocket, watcher: Watcher) -> AsyncGenerator[Event | None]:
    """The watcher's events as they come, and None after each `STATUS_EVERY_SECONDS` without
    one, until the page goes away."""
    receiver = asyncio.create_task(_until_closed(websocket))
    getter: asyncio.Task[Event] | None = None
    try:
        while True:
            if getter is None:
                getter = asyncio.create_task(watcher.queue.get())
            done, _ = await asyncio.wait({receiver, getter}, timeout=STATUS_EVERY_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                return
            if getter in done:
                event, getter = getter.result(), None
                yield event
            else:
                yield None
    finally:
        for task in (receiver, getter):
            if task is not None:
                task.cancel()


async def serve_live(websocket: WebSocket, watcher: Watcher, account_id: int,
                     snapshot: Snapshot, status: Status) -> None:
    """Send the page a snapshot, then every change, and the device's status every few seconds,
    until the page goes away or the device leaves the account."""

    async def send(message: dict[str, Any]) -> None:
        await websocket.send_text(orjson.dumps(message).decode())

    async def still_owned() -> bool:
        """Send the status; False (and tell the page) if the device is no longer the visitor's."""
        now = await status()
        if now is None:
            await send({"type": "released"})
            await websocket.close()
            return False
        await send({"type": "status", "status": now})
        return True

    try:
        first = await snapshot()
        if first.get("status") is None:
            return
        await send(first)
        async with contextlib.aclosing(_events(websocket, watcher)) as events:
            async for event in events:
                if event is None:
                    if not await still_owned():
                        return
                    continue
                if _left(event, account_id):
                    await send({"type": "released"})
                    await websocket.close()
                    return
                if watcher.caught_up():
                    await send(await snapshot())
                elif isinstance(event, FieldChanged):
                    await send(field_message(event))
                    if event.source == "device" and not await still_owned():
                        return
                elif not await still_owned():
                    return
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the page went away while we were sending


async def serve_fleet(websocket: WebSocket, watcher: Watcher, account_id: int,
                      statuses: Statuses, status_of: DeviceStatusOf) -> None:
    """Send the device list every device's status, then each connect, disconnect and field
    change as it comes, and every status again every few seconds, until the page goes away."""

    async def send(message: dict[str, Any]) -> None:
        await websocket.send_text(orjson.dumps(message).decode())

    async def everyone() -> set[str]:
        now = await statuses()
        await send({"type": "devices", "devices": now})
        return set(now)

    try:
        owned = await everyone()
        async with contextlib.aclosing(_events(websocket, watcher)) as events:
            async for event in events:
                if event is None or watcher.caught_up():
                    owned = await everyone()
                    continue
                token = event.device_token
                if token not in owned:
                    continue
                if _left(event, account_id):
                    owned.discard(token)
                    await send({"type": "gone", "token": token})
                elif isinstance(event, PresenceChanged | FieldChanged):
                    message: dict[str, Any] = {"type": "device", "token": token,
                                               "status": await status_of(token)}
                    if isinstance(event, FieldChanged):
                        message["field"] = field_message(event)
                    await send(message)
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
