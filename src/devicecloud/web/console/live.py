"""Live console pages: the bus events about one device, sent to the browser over a WebSocket.

One bus subscription serves every page; events are routed by device token to each watching
page's bounded queue. A page that falls behind gets a fresh snapshot instead of the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from devicecloud.core.events import DeviceBound, DeviceReleased, Event, FieldChanged
from devicecloud.core.ports import Bus

QUEUE_LIMIT = 512
STATUS_EVERY_SECONDS = 5.0

Snapshot = Callable[[], Awaitable[dict[str, Any]]]
Status = Callable[[], Awaitable[dict[str, Any]]]


class Watcher:
    """The events waiting for one console page."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self.behind = False

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.behind = True


class LiveFeeds:
    """Routes bus events to the console pages watching each device."""

    def __init__(self, bus: Bus) -> None:
        self._watchers: dict[str, set[Watcher]] = {}
        self._unsubscribe = bus.subscribe(self._on_event)

    @contextlib.contextmanager
    def watch(self, token: str) -> Iterator[Watcher]:
        watcher = Watcher()
        self._watchers.setdefault(token, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers.get(token)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[token]

    def close(self) -> None:
        self._unsubscribe()

    def _on_event(self, event: Event) -> None:
        for watcher in tuple(self._watchers.get(event.device_token, ())):
            watcher.offer(event)


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

    receiver = asyncio.create_task(_until_closed(websocket))
    getter: asyncio.Task[Event] | None = None
    try:
        await send(await snapshot())
        while True:
            if getter is None:
                getter = asyncio.create_task(watcher.queue.get())
            done, _ = await asyncio.wait({receiver, getter}, timeout=STATUS_EVERY_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                return
            if getter not in done:
                await send({"type": "status", "status": await status()})
                continue
            event, getter = getter.result(), None
            if watcher.behind:
                watcher.behind = False
                while not watcher.queue.empty():
                    watcher.queue.get_nowait()
                await send(await snapshot())
            elif isinstance(event, FieldChanged):
                await send(field_message(event))
                if event.source == "device":
                    await send({"type": "status", "status": await status()})
            elif isinstance(event, DeviceReleased) or (
                    isinstance(event, DeviceBound) and event.account_id != account_id):
                await send({"type": "released"})
                await websocket.close()
                return
            else:
                await send({"type": "status", "status": await status()})
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the page went away while we were sending
    finally:
        for task in (receiver, getter):
            if task is not None:
                task.cancel()
