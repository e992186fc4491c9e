"""The event log beside the changes: presence as each process observes it, and retention.

The changes' own events are written by the store's jobs in the transactions that commit them;
what is left to a running process is to log `device.online`/`device.offline` as it sees its
connections come and go, and to forget events older than `EVENT_RETENTION_MS`, a few hundred
rows per transaction so that writes never wait long behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.events import DEVICE_OFFLINE, DEVICE_ONLINE, Event, PresenceChanged
from devicecloud.core.ids import now_ms
from devicecloud.core.ports import Bus, EventStore, Presence

log = logging.getLogger(__name__)

EVENT_RETENTION_MS = 7 * 24 * 3600 * 1000
"""Events are kept this long (7 days), then deleted."""
FORGET_STEP = 500  # events deleted per transaction
FORGET_EVERY_S = 60.0  # between sweeps once nothing old is left
_FORGET_PAUSE_S = 0.05  # between the steps of one sweep: other writes go in between


class EventLog:
    """Logs this process's observations of presence and keeps the log within its retention;
    tells the readers of the log here when it wrote a row and when the process stops."""

    def __init__(self, store: EventStore, bus: Bus, presence: Presence | None = None) -> None:
        self.store = store
        self.bus = bus
        self.presence = presence  # set by the composition root; None: this process's view only
        self.stopping = asyncio.Event()  # set when the process stops: readers end their streams
        self._seen: asyncio.Queue[PresenceChanged] = asyncio.Queue()
        self._listeners: set[Callable[[str], None]] = set()

    def listen(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call `listener(device token)` after each row this log writes; returns its undoing."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def stop_streams(self) -> None:
        self.stopping.set()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, PresenceChanged):
            self._seen.put_nowait(event)

    async def run(self) -> None:
        """Until cancelled: log presence changes in the order seen, and sweep old events."""
        unsubscribe = self.bus.subscribe(self._on_event, own_only=True)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._log_presence())
                tasks.create_task(self._forget())
        finally:
            unsubscribe()

    async def _log_presence(self) -> None:
        while True:
            change = await self._seen.get()
            with contextlib.suppress(DeviceCloudError):  # the database is away: said elsewhere
                await self.log_presence(change)

    async def log_presence(self, change: PresenceChanged) -> None:
        """Log the device going online or offline here; offline only if no other process
        holds it still."""
        token = change.device_token
        if not change.online and self.presence is not None and \
                (await self.presence.status(token)).online:
            return
        kind = DEVICE_ONLINE if change.online else DEVICE_OFFLINE
        await self.store.record_event(token, kind, {"transport": change.transport}, now_ms())
        for listener in tuple(self._listeners):
            listener(token)

    async def _forget(self) -> None:
        while True:
            try:
                gone = await self.forget_old()
            except DeviceCloudError as problem:
                log.warning("event log retention: %s", problem)
                gone = 0
            await asyncio.sleep(_FORGET_PAUSE_S if gone >= FORGET_STEP else FORGET_EVERY_S)

    async def forget_old(self) -> int:
        """One step of the retention: delete up to `FORGET_STEP` events older than
        `EVENT_RETENTION_MS`; how many went."""
        return await self.store.forget_events(now_ms() - EVENT_RETENTION_MS, FORGET_STEP)
