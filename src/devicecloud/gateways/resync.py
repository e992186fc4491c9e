"""After a gap in the cross-process bus: the devices this process serves get the current state.

When events from other processes may have been missed since `since`, every device with a
subscriber here is read from the database, and each of its fields changed since then is
delivered to its subscribers as if it had just changed (with the field's current value, so a
late push can never put an older value back). Fields deleted during the gap are not announced.
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
    """Runs one resynchronisation at a time; a gap reported meanwhile widens the next one."""

    def __init__(self, cloud: DeviceCloud, hub: Hub) -> None:
        self.cloud = cloud
        self.hub = hub
        self._since: int | None = None
        self._task: asyncio.Task[None] | None = None

    def gap(self, since: int) -> None:
        self._since = since if self._since is None else min(self._since, since)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)

    async def _run(self) -> None:
        while self._since is not None:
            since, self._since = self._since, None
            tokens = self.hub.routed()
            log.info("bus gap: sending %d device(s) what changed since %d", len(tokens), since)
            for token in tokens:
                try:
                    await self._device(token, since)
                except DeviceCloudError as problem:
                    log.warning("bus gap: cannot read device state (%s)", problem)

    async def _device(self, token: str, since: int) -> None:
        device = await self.cloud.authenticate(token)
        for field in await self.cloud.list_fields(device):
            if field.updated_at >= since:
                change = (Change.FILE if field.data_type == "file" else
                          Change.ADDED if field.created_at >= since else Change.MODIFIED)
                self.hub.deliver(token, FieldChanged(token, change, field, SOURCE))
