"""Where the limits count: token buckets and open connections, in this process's memory or in
Redis, shared by every process that uses it.

`Buckets.take` takes up to `want` tokens from a key's bucket at once (a lease the caller spends
locally); `Connections.open` counts one more open connection of an address unless that makes
more than the cap. The memory kinds answer at once (`take_now`, `open_now`); the Redis kinds in
one round trip: a Lua script for a bucket, one pipeline for a connection count.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from redis.asyncio import Redis

from devicecloud.core.ids import PROCESS_ID
from devicecloud.gateways.membership import Membership

MAX_KEYS = 100_000  # beyond this many keys the least recently used are forgotten
PREFIX = "devicecloud:limit:"
ALIVE_SECONDS = 5.0  # how long the list of live processes is believed
CONNECTIONS_TTL = 24 * 3600  # a connection count nobody touched for a day is dropped


class Bucket(Protocol):
    """A rate: `per_second` tokens a second, at most `burst` kept."""

    @property
    def per_second(self) -> float: ...

    @property
    def burst(self) -> int: ...


def refill(tokens: float, then: float, now: float, rate: Bucket) -> float:
    return min(float(rate.burst), tokens + max(0.0, now - then) * rate.per_second)


def wait_for_one(tokens: float, rate: Bucket) -> float:
    return max(0.0, (1 - tokens) / rate.per_second)


class Buckets(Protocol):
    """Token buckets by key."""

    async def take(self, key: str, rate: Bucket, want: int, now: float) -> tuple[int, float]:
        """Take up to `want` whole tokens: how many were taken, and (if none) the seconds until
        one would be there."""
        ...


class MemoryBuckets:
    """Buckets in this process's memory, each `[tokens, when counted]`. Beyond `MAX_KEYS` keys
    the oldest half is forgotten (a forgotten key starts full again, as an idle one would)."""

    def __init__(self) -> None:
        self.buckets: dict[str, list[float]] = {}

    def take_now(self, key: str, rate: Bucket, want: int, now: float) -> tuple[int, float]:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_KEYS:
                self._forget_oldest()
            bucket = self.buckets[key] = [float(rate.burst), now]
        tokens = refill(bucket[0], bucket[1], now, rate)
        taken = min(want, math.floor(tokens))
        bucket[0], bucket[1] = tokens - taken, max(now, bucket[1])
        return taken, 0.0 if taken else wait_for_one(tokens, rate)

    def _forget_oldest(self) -> None:
        by_age = sorted(self.buckets.items(), key=lambda item: item[1][1])
        self.buckets = dict(by_age[len(by_age) // 2:])

    async def take(self, key: str, rate: Bucket, want: int, now: float) -> tuple[int, float]:
        return self.take_now(key, rate, want, now)


# A bucket is a hash {t: tokens, at: when they were counted}; it expires once it would be full
# again, so an idle key costs nothing. Lua numbers come back as integers, hence the string.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local want, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local held = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(held[1]), tonumber(held[2])
if tokens == nil or at == nil then tokens, at = burst, now end
if now > at then tokens = math.min(burst, tokens + (now - at) * rate); at = now end
local taken = math.min(want, math.floor(tokens))
tokens = tokens - taken
local wait = 0
if taken < 1 then wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {taken, tostring(wait)}
"""


class RedisBuckets:
    """Buckets in Redis: each take is one atomic script, so processes share every bucket."""

    def __init__(self, redis: Redis, prefix: str = PREFIX + "bucket:") -> None:
        self.prefix = prefix
        self._script = redis.register_script(_TAKE)

    async def take(self, key: str, rate: Bucket, want: int, now: float) -> tuple[int, float]:
        taken, wait = await self._script(keys=[self.prefix + key],
                                         args=[repr(rate.per_second), rate.burst, want, repr(now)])
        return int(taken), float(wait)


class Connections(Protocol):
    """Open connections by address."""

    async def open(self, address: str, most: int) -> bool:
        """Count one more connection of `address`; False (and not counted) if that would make
        more than `most`."""
        ...

    async def close(self, address: str) -> None:
        """One connection counted by `open` closed."""
        ...


class MemoryConnections:
    """Open connections of this process (an address with none is forgotten)."""

    def __init__(self) -> None:
        self.open_by: dict[str, int] = {}

    def open_now(self, address: str, most: int) -> bool:
        count = self.open_by.get(address, 0)
        if count >= most:
            return False
        self.open_by[address] = count + 1
        return True

    async def open(self, address: str, most: int) -> bool:
        return self.open_now(address, most)

    def close_now(self, address: str) -> None:
        count = self.open_by.get(address, 0) - 1
        if count > 0:
            self.open_by[address] = count
        else:
            self.open_by.pop(address, None)

    async def close(self, address: str) -> None:
        self.close_now(address)


class RedisConnections:
    """Open connections of every process: a hash per address, one field per process, so that
    the connections of a process that died stop counting once its liveness record expires
    (gateways/membership.py)."""

    def __init__(self, redis: Redis, instance: str = PROCESS_ID,
                 prefix: str = PREFIX + "connections:") -> None:
        self.redis = redis
        self.instance = instance
        self.prefix = prefix
        self._membership = Membership(redis, instance)
        self._asked: set[str] = set()
        self._alive: set[str] = set()
        self._alive_at = -math.inf

    async def open(self, address: str, most: int) -> bool:
        key = self.prefix + address
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, self.instance, 1)
            pipe.expire(key, CONNECTIONS_TTL)
            pipe.hgetall(key)
            replies = await pipe.execute()
        counts = {field.decode() if isinstance(field, bytes) else str(field): max(0, int(count))
                  for field, count in replies[2].items()}  # below 0 after Redis lost them
        others = [instance for instance in counts if instance != self.instance]
        alive = await self._live(others)
        total = counts[self.instance] + sum(counts[i] for i in others if i in alive)
        if total > most:
            await self.close(address)
            return False
        return True

    async def close(self, address: str) -> None:
        await self.redis.hincrby(self.prefix + address, self.instance, -1)

    async def _live(self, instances: list[str]) -> set[str]:
        """Which of `instances` are alive, as known at most `ALIVE_SECONDS` ago."""
        if not instances:
            return set()
        if not self._asked.issuperset(instances) \
                or time.monotonic() - self._alive_at > ALIVE_SECONDS:
            self._alive = await self._membership.alive(instances)
            self._asked, self._alive_at = set(instances), time.monotonic()
        return self._alive
