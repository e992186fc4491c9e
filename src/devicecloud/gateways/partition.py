"""Which instance answers a device's up messages when the broker cannot share a subscription.

Without `$share` delivery (Mosquitto 2.0 on `$` topics) every instance receives every up message
and handles only the devices it owns. `StaticPartition` splits tokens by `--mqtt-partition
INDEX/COUNT`. `LiveMembers` splits them over the instances alive right now (rendezvous hashing
over the liveness records in Redis), so when one stops or dies the others take its devices over
within the liveness bound, and a new instance takes its share once it has settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Protocol

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


class Partition(Protocol):
    def owns(self, token: str) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Membership(Protocol):
    """The instances serving the fleet: this one's id, and the ids of those settled and alive."""

    instance: str

    async def members(self) -> list[str]: ...


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
    """Each token belongs to the live member with the highest rendezvous weight."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.members: tuple[str, ...] = ()
        self._owners: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None

    def owns(self, token: str) -> bool:
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
            members = tuple(sorted(await self.membership.members()))
        except (RedisError, OSError) as problem:
            log.warning("partition: cannot read the live instances (%s)", problem)
            return
        if members != self.members:
            log.info("partition: %d live instance(s) share the devices", len(members))
            self.members, self._owners = members, {}

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.refresh()
