"""After a gap in the cross-process bus: the devices this process serves get the current state.

When events from other processes may have been missed from `since` (until `until`, or now),
every device with a subscriber here is read from the database, and each of its fields last
changed in that time is delivered to its subscribers as if it had just changed, with its current
value (so a late push can never put an older value back). Fields deleted meanwhile are not
announced.
"""

from __future__ import annotations

import asyncio
import logging

from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.events import Change, FieldChanged
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.hub import Hub

log = logging.getLogger(__name__)

SOURCE = "resync"


class Resync:
    """Runs one resynchronisation at a time; gaps reported meanwhile make up the next one."""

    def __init__(self, cloud: DeviceCloud, hub: Hub) -> None:
        self.cloud = cloud
        self.hub = hub
        self._pending: list[tuple[int, int | None]] = []
        self._task: asyncio.Task[None] | None = None

    def gap(self, since: int, until: int | None = None) -> None:
        self._pending.append((since, until))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)

    async def _run(self) -> None:
        while self._pending:
            since = min(start for start, _ in self._pending)
            ends = [end for _, end in self._pending]
            until = None if None in ends else max(e for e in ends if e is not None)
            self._pending.clear()
            tokens = self.hub.routed()
            log.info("bus gap: sending %d device(s) what changed since %d", len(tokens), since)
            for token in tokens:
                try:
                    await self._device(token, since, until)
                except DeviceCloudError as problem:
                    log.warning("bus gap: cannot read device state (%s)", problem)

    async def _device(self, token: str, since: int, until: int | None) -> None:
        device = await self.cloud.authenticate(token)
        for field in await self.cloud.list_fields(device):
            if field.updated_at >= since and (until is None or field.updated_at < until):
                change = (Change.FILE if field.data_type == "file" else
                          Change.ADDED if field.created_at >= since else Change.MODIFIED)
                self.hub.deliver(token, FieldChanged(token, change, field, SOURCE))
