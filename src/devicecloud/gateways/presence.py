"""Which devices are online, across every devicecloud process.

Each process knows its own live connections (the `Hub`). With one process that is the whole
truth (`LocalPresence`). With several, each process also writes its share to Redis
(`RedisPresence`): a hash per device token, one entry per process holding it, counted while
that process's liveness record lives (`membership`: within INSTANCE_TTL of a silent death). If
Redis restarts empty, each process finds its liveness record gone and writes its entries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from redis.asyncio import Redis
from redis.exceptions import RedisError

from devicecloud.core.ports import DeviceStatus
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.membership import INSTANCE_TTL, REFRESH_EVERY, Membership

log = logging.getLogger(__name__)

READ_TIMEOUT = 0.5  # a frozen Redis costs a presence read at most this long
_PRESENCE = "devicecloud:presence:"


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
    """Presence shared through Redis: a hash per device token, one entry per process holding it,
    counted only while that process is alive (`Membership`)."""

    def __init__(self, hub: Hub, url: str) -> None:
        super().__init__(hub)
        self.redis = Redis.from_url(url, decode_responses=True, socket_timeout=READ_TIMEOUT,
                                    socket_connect_timeout=READ_TIMEOUT)
        self.membership = Membership(self.redis)
        self.membership.on_lost = self._rewrite_all
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        hub.on_change = self._changed

    @property
    def instance(self) -> str:
        return self.membership.instance

    async def start(self) -> None:
        await self.membership.start()
        self._task = asyncio.create_task(self._write())

    async def close(self) -> None:
        """Withdraw this process's entries (briefly), then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with self.redis.pipeline(transaction=False) as pipe:
                for token in self.hub.tokens():
                    pipe.hdel(_PRESENCE + token, self.instance)
                await asyncio.wait_for(pipe.execute(), 1.0)
        await self.membership.close()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self.redis.aclose(), 1.0)

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
                alive = await self.membership.alive(instances)
                for token, instance, transports in claims:
                    if instance in alive:
                        held[token].update(transports.split(","))
        except (RedisError, OSError, TimeoutError) as problem:
            log.warning("presence: Redis unavailable (%s); answering for this process only",
                        problem)
        return held

    def _changed(self, token: str) -> None:
        self._dirty.add(token)
        self._wake.set()

    def _rewrite_all(self) -> None:
        self._dirty.update(self.hub.tokens())
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
            except (RedisError, OSError, TimeoutError) as problem:
                log.warning("presence: cannot write to Redis (%s); will retry", problem)
                self._dirty |= tokens
                await asyncio.sleep(1.0)
                self._wake.set()


__all__ = ["INSTANCE_TTL", "REFRESH_EVERY", "LocalPresence", "RedisPresence"]
