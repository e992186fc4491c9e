"""Live console pages: the events about one device, sent to the browser over a WebSocket.

Each page watching a device is a subscriber of the hub with a bounded queue. A page that falls
behind gets a fresh snapshot instead of the backlog. Whether the visitor still owns the device
is read from the database with every status update, so a page closes within
`STATUS_EVERY_SECONDS` of a release made anywhere, even if the release's event never came.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from devicecloud.core.events import DeviceBound, DeviceReleased, Event, FieldChanged
from devicecloud.gateways.hub import Hub

QUEUE_LIMIT = 512
STATUS_EVERY_SECONDS = 5.0

Snapshot = Callable[[], Awaitable[dict[str, Any]]]
Status = Callable[[], Awaitable[dict[str, Any] | None]]  # None: the visitor lost the device


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


def field_message(event: FieldChanged) -> dict[str, Any]:
    return {"type": "field", "change": event.change.name.lower(), "source": event.source,
            "record": event.field.record()}


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


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

    receiver = asyncio.create_task(_until_closed(websocket))
    getter: asyncio.Task[Event] | None = None
    try:
        first = await snapshot()
        if first.get("status") is None:
            return
        await send(first)
        while True:
            if getter is None:
                getter = asyncio.create_task(watcher.queue.get())
            done, _ = await asyncio.wait({receiver, getter}, timeout=STATUS_EVERY_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                return
            if getter not in done:
                if not await still_owned():
                    return
                continue
            event, getter = getter.result(), None
            if isinstance(event, DeviceReleased) or (
                    isinstance(event, DeviceBound) and event.account_id != account_id):
                await send({"type": "released"})
                await websocket.close()
                return
            if watcher.behind:
                watcher.behind = False
                while not watcher.queue.empty():
                    watcher.queue.get_nowait()
                await send(await snapshot())
            elif isinstance(event, FieldChanged):
                await send(field_message(event))
                if event.source == "device" and not await still_owned():
                    return
            elif not await still_owned():
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the page went away while we were sending
    finally:
        for task in (receiver, getter):
            if task is not None:
                task.cancel()
