"""Which instance answers a device's up messages when the broker cannot share a subscription.

Without `$share` delivery (Mosquitto 2.0 on `$` topics) every instance receives every up message
and handles only the devices it owns. `StaticPartition` splits tokens by `--mqtt-partition
INDEX/COUNT`. `LiveMembers` splits them over the instances alive right now (rendezvous hashing
over the liveness records in Redis), so when one stops or dies the others take its devices over
within the liveness bound.

A new instance counts only once it has been up for SETTLE_SECONDS, judged by its start time as
recorded in Redis: every instance has seen it by then (they re-read the records every
REFRESH_SECONDS), and all switch to the new split at the same moment, so no message is handled
twice. The price: a whole cluster started from cold answers MQTT devices SETTLE_SECONDS later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from typing import Protocol

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
SETTLE_SECONDS = 2.5


class Partition(Protocol):
    def owns(self, token: str) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Membership(Protocol):
    """The instances serving the fleet: this one's id, and each live one's start time."""

    instance: str

    async def members(self) -> dict[str, float]: ...


class StaticPartition:
    """Partition INDEX of COUNT, by the token's leading hex digits."""

    def __init__(self, index: int, count: int) -> None:
        self.index, self.count = index, count

    def owns(self, token: str) -> bool:
        return self.count <= 1 or int(token[:8], 16) % self.count == self.index

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""


def _weight(token: str, member: str) -> bytes:
    return hashlib.blake2b(f"{token}/{member}".encode(), digest_size=8).digest()


class LiveMembers:
    """Each token belongs to the settled live member with the highest rendezvous weight."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.members: tuple[str, ...] = ()
        self._alive: dict[str, float] = {}
        self._recheck = 0.0
        self._owners: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None

    def owns(self, token: str) -> bool:
        now = time.time()
        if now >= self._recheck:
            self._settle(now)
        mine = self._owners.get(token)
        if mine is None:
            owner = max(self.members, key=lambda member: _weight(token, member), default="")
            mine = self._owners[token] = owner == self.membership.instance
        return mine

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._keep_fresh())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        """Read the live members again; on a Redis failure keep the last view."""
        try:
            self._alive = await self.membership.members()
        except (RedisError, OSError) as problem:
            log.warning("partition: cannot read the live instances (%s)", problem)
            return
        self._settle(time.time())

    def _settle(self, now: float) -> None:
        settled = tuple(sorted(i for i, since in self._alive.items()
                               if now - since >= SETTLE_SECONDS))
        self._recheck = min((since + SETTLE_SECONDS for since in self._alive.values()
                             if now - since < SETTLE_SECONDS), default=math.inf)
        if settled != self.members:
            log.info("partition: %d live instance(s) share the devices", len(settled))
            self.members, self._owners = settled, {}

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.refresh()
