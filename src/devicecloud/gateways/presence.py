"""Which devices are online, across every devicecloud process.

Each process knows its own live connections (the `Hub`). With one process that is the whole
truth (`LocalPresence`). With several, each process also writes its share to Redis
(`RedisPresence`): a hash per device token, one entry per process holding it, and a liveness key
per process that expires `INSTANCE_TTL` seconds after the process stops refreshing it, so entries
of a process that died without saying goodbye stop counting within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Collection

from redis.asyncio import Redis
from redis.exceptions import RedisError

from devicecloud.core.ports import DeviceStatus
from devicecloud.gateways.hub import Hub

log = logging.getLogger(__name__)

INSTANCE_TTL = 10
REFRESH_EVERY = 3.0
_PRESENCE = "devicecloud:presence:"
_INSTANCE = "devicecloud:instance:"


class LocalPresence:
    """Presence for a single process: its own hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def status(self, token: str) -> DeviceStatus:
        transports = self.hub.transports(token)
        return DeviceStatus(bool(transports), transports)

    async def online(self, tokens: Collection[str]) -> set[str]:
        return {token for token in tokens if self.hub.transports(token)}

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""


class RedisPresence(LocalPresence):
    """Presence shared through Redis."""

    def __init__(self, hub: Hub, url: str) -> None:
        super().__init__(hub)
        self.redis = Redis.from_url(url, decode_responses=True)
        self.instance = uuid.uuid4().hex
        self.started = time.time()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        hub.on_change = self._changed

    async def start(self) -> None:
        await self._announce()
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._beat())]

    async def close(self) -> None:
        """Withdraw this process's entries, then stop."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            async with self.redis.pipeline(transaction=False) as pipe:
                for token in self.hub.tokens():
                    pipe.hdel(_PRESENCE + token, self.instance)
                pipe.delete(_INSTANCE + self.instance)
                await pipe.execute()
        await self.redis.aclose()

    async def status(self, token: str) -> DeviceStatus:
        transports = set(self.hub.transports(token)) | (await self._elsewhere([token]))[token]
        ordered = tuple(sorted(transports))
        return DeviceStatus(bool(ordered), ordered)

    async def online(self, tokens: Collection[str]) -> set[str]:
        elsewhere = await self._elsewhere(tokens)
        return {token for token in tokens if self.hub.transports(token) or elsewhere[token]}

    async def _elsewhere(self, tokens: Collection[str]) -> dict[str, set[str]]:
        """The transports by which live processes other than this one hold each device."""
        held: dict[str, set[str]] = {token: set() for token in tokens}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for token in held:
                    pipe.hgetall(_PRESENCE + token)
                entries: list[dict[str, str]] = await pipe.execute()
            claims = [(token, instance, transports)
                      for token, found in zip(held, entries, strict=True)
                      for instance, transports in found.items() if instance != self.instance]
            instances = sorted({instance for _, instance, _ in claims})
            if instances:
                beats = await self.redis.mget([_INSTANCE + i for i in instances])
                alive = {i for i, beat in zip(instances, beats, strict=True) if beat is not None}
                for token, instance, transports in claims:
                    if instance in alive:
                        held[token].update(transports.split(","))
        except (RedisError, OSError) as problem:
            log.warning("presence: Redis unavailable (%s); answering for this process only",
                        problem)
        return held

    async def members(self) -> dict[str, float]:
        """The live processes, each with the time it started."""
        keys = [key async for key in self.redis.scan_iter(_INSTANCE + "*", count=500)]
        started = await self.redis.mget(keys) if keys else []
        return {key[len(_INSTANCE):]: float(since)
                for key, since in zip(keys, started, strict=True) if since is not None}

    def _changed(self, token: str) -> None:
        self._dirty.add(token)
        self._wake.set()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            tokens, self._dirty = self._dirty, set()
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for token in tokens:
                        held = self.hub.transports(token)
                        if held:
                            pipe.hset(_PRESENCE + token, self.instance, ",".join(held))
                        else:
                            pipe.hdel(_PRESENCE + token, self.instance)
                    await pipe.execute()
            except (RedisError, OSError) as problem:
                log.warning("presence: cannot write to Redis (%s); will retry", problem)
                self._dirty |= tokens
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _announce(self) -> None:
        """Say this process is alive, for INSTANCE_TTL seconds."""
        try:
            await self.redis.set(_INSTANCE + self.instance, str(self.started), ex=INSTANCE_TTL)
            if self._dirty:
                self._wake.set()
        except (RedisError, OSError) as problem:
            log.warning("presence: cannot refresh this process's liveness (%s)", problem)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            await self._announce()
