"""Which devicecloud processes are alive: a liveness key per process in Redis.

Each process refreshes its key every `REFRESH_EVERY` seconds; the key expires `INSTANCE_TTL`
seconds after the last refresh, so a process that died without a word stops counting within
that time. The key's value is the process's start time (the MQTT partition uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from devicecloud.core.ids import PROCESS_ID

log = logging.getLogger(__name__)

INSTANCE_TTL = 10
REFRESH_EVERY = 3.0
_INSTANCE = "devicecloud:instance:"


class Membership:
    """This process's liveness record, and everyone's."""

    def __init__(self, redis: Redis, instance: str = PROCESS_ID) -> None:
        self.redis = redis
        self.instance = instance
        self.started = time.time()
        self.on_lost: Callable[[], None] | None = None  # our records vanished (Redis restarted)
        self._announced = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.announce()
        self._task = asyncio.create_task(self._beat())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self.redis.delete(_INSTANCE + self.instance), 1.0)

    async def announce(self) -> None:
        """Say this process is alive for INSTANCE_TTL seconds. If its record had vanished
        although it was refreshed in time, Redis lost its data: `on_lost` rewrites ours."""
        try:
            previous = await self.redis.set(_INSTANCE + self.instance, str(self.started),
                                            ex=INSTANCE_TTL, get=True)
        except (RedisError, OSError) as problem:
            log.warning("membership: cannot refresh this process's liveness (%s)", problem)
            return
        if previous is None and self._announced and self.on_lost is not None:
            log.warning("membership: this process's records were gone from Redis; rewriting")
            self.on_lost()
        self._announced = True

    async def alive(self, instances: list[str]) -> set[str]:
        beats = await self.redis.mget([_INSTANCE + i for i in instances])
        return {i for i, beat in zip(instances, beats, strict=True) if beat is not None}

    async def members(self) -> dict[str, float]:
        """The live processes, each with the time it started."""
        keys = [key async for key in self.redis.scan_iter(_INSTANCE + "*", count=500)]
        started = await self.redis.mget(keys) if keys else []
        return {key[len(_INSTANCE):]: float(since)
                for key, since in zip(keys, started, strict=True) if since is not None}

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            await self.announce()
