"""Attempt counters over sliding windows (failed logins, wrong pairing codes), in this process's
memory or shared by every process through Redis.

An attempt is counted *before* it is tried: `Throttle.attempt` adds it under each of its keys and
refuses it at once if any key then holds more than its rule's limit within the window (a refused
attempt is taken back, so it neither counts nor renews a lock-out). What succeeds is forgiven; what
fails stays counted. Counting first means parallel requests, on one process or many, cannot all
slip in before the first failure is recorded.

With Redis each key is a sorted set of attempt times, changed in one MULTI/EXEC pipeline per
attempt and expiring with its window. If Redis cannot be reached the attempt is counted in memory
(the limits then hold per process) and one log line says so; another says when Redis is back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "devicecloud:throttle:"
REDIS_TIMEOUT = 1.0  # seconds; slower than this counts as unreachable
_MAX_KEYS = 100_000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rule:
    """At most `limit` attempts per key within `window` seconds."""

    name: str
    limit: int
    window: float


Check = tuple[Rule, str]  # a rule and the key it counts under (an email, an address, ...)


class Counter(Protocol):
    """Where attempts are kept."""

    async def add(self, attempt: str, checks: Sequence[Check], now: float) -> float:
        """Count `attempt` under every check; 0 if every key is within its limit, else the
        seconds until all would be (the attempt is then taken back)."""

    async def remove(self, attempt: str, checks: Sequence[Check]) -> None:
        """Take `attempt` back."""

    async def clear(self, checks: Sequence[Check]) -> None:
        """Forget every attempt under these keys."""


def _wait(times: Sequence[float], rule: Rule, now: float) -> float:
    """Given a key's attempt times (newest first, the new one included), how long until it is
    within its limit again: when the `limit`-th newest of the others leaves the window."""
    return max(0.0, times[rule.limit] + rule.window - now) if len(times) > rule.limit else 0.0


class MemoryCounter:
    """Attempts in this process's memory; keys past `_MAX_KEYS` are pruned of stale ones."""

    def __init__(self) -> None:
        self._keys: dict[str, deque[tuple[float, str]]] = {}

    async def add(self, attempt: str, checks: Sequence[Check], now: float) -> float:
        if len(self._keys) >= _MAX_KEYS:
            self._forget_old(now)
        wait = 0.0
        for rule, key in checks:
            times = self._keys.setdefault(f"{rule.name}:{key}", deque(maxlen=rule.limit + 1))
            while times and times[0][0] <= now - rule.window:
                times.popleft()
            times.append((now, attempt))
            wait = max(wait, _wait([t for t, _ in reversed(times)], rule, now))
        if wait:
            await self.remove(attempt, checks)
        return wait

    async def remove(self, attempt: str, checks: Sequence[Check]) -> None:
        for rule, key in checks:
            times = self._keys.get(f"{rule.name}:{key}")
            if times is not None:
                self._keys[f"{rule.name}:{key}"] = deque(
                    (entry for entry in times if entry[1] != attempt), maxlen=times.maxlen)

    async def clear(self, checks: Sequence[Check]) -> None:
        for rule, key in checks:
            self._keys.pop(f"{rule.name}:{key}", None)

    def _forget_old(self, now: float) -> None:
        longest = 24 * 3600.0  # no rule's window is longer
        for key in [k for k, times in self._keys.items()
                    if not times or times[-1][0] <= now - longest]:
            del self._keys[key]


class RedisCounter:
    """Attempts in Redis, shared by every process using it."""

    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix

    async def add(self, attempt: str, checks: Sequence[Check], now: float) -> float:
        async with self.redis.pipeline(transaction=True) as pipe:
            for rule, key in checks:
                name = self.prefix + f"{rule.name}:{key}"
                pipe.zremrangebyscore(name, "-inf", now - rule.window)
                pipe.zadd(name, {attempt: now})
                pipe.zremrangebyrank(name, 0, -(rule.limit + 2))  # keep the limit + 1 newest
                pipe.expire(name, math.ceil(rule.window))
                pipe.zrevrange(name, 0, rule.limit, withscores=True)
            replies = await pipe.execute()
        wait = 0.0
        for (rule, _), newest in zip(checks, replies[4::5], strict=True):
            wait = max(wait, _wait([score for _, score in newest], rule, now))
        if wait:
            await self.remove(attempt, checks)
        return wait

    async def remove(self, attempt: str, checks: Sequence[Check]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for rule, key in checks:
                pipe.zrem(self.prefix + f"{rule.name}:{key}", attempt)
            await pipe.execute()

    async def clear(self, checks: Sequence[Check]) -> None:
        await self.redis.delete(*(self.prefix + f"{rule.name}:{key}" for rule, key in checks))


@dataclass(slots=True)
class Attempt:
    """One counted attempt: `wait` is 0 if it may go ahead, else the seconds to wait."""

    throttle: Throttle
    counter: Counter  # where it was counted, so that it is taken back there
    name: str
    checks: Sequence[Check]
    wait: int

    async def forgive(self) -> None:
        """It succeeded: it no longer counts."""
        await self.throttle.on(self.counter, lambda c: c.remove(self.name, self.checks))

    async def clear(self, *checks: Check) -> None:
        """Forget every attempt under these keys (after a success that proves the right to)."""
        await self.throttle.on(self.counter, lambda c: c.clear(checks))


class Throttle:
    """Counts attempts in Redis when given a client, else in memory; in memory too while Redis
    is unreachable."""

    def __init__(self, redis: Redis | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.local = MemoryCounter()
        self.shared = RedisCounter(redis) if redis is not None else None
        self._clock = clock
        self._degraded = False

    @classmethod
    def for_url(cls, bus_url: str) -> Throttle:
        """Shared through the Redis at `bus_url`, or in memory if there is none."""
        if not bus_url:
            return cls()
        return cls(Redis.from_url(bus_url, socket_timeout=REDIS_TIMEOUT,
                                  socket_connect_timeout=REDIS_TIMEOUT,
                                  retry=Retry(NoBackoff(), 0)))

    async def attempt(self, *checks: Check) -> Attempt:
        """Count one attempt under every check (see the module's docstring)."""
        now = self._clock()
        name = f"{now:.6f}:{secrets.token_hex(4)}"
        wait, counter = await self.on(self.shared or self.local,
                                      lambda c: c.add(name, checks, now))
        return Attempt(self, counter, name, checks, math.ceil(wait))

    async def on(self, counter: Counter, action: Callable[[Counter], Awaitable[T]]
                 ) -> tuple[T, Counter]:
        """`action` on `counter`, or on the local counter if that is Redis and it fails; the
        result and the counter that gave it."""
        if counter is self.shared:
            try:
                result = await action(counter)
            except (RedisError, OSError, TimeoutError) as problem:
                if not self._degraded:
                    log.warning("Redis unreachable (%s): log-ins and pairing codes are counted "
                                "in this process only until it answers", problem)
                self._degraded = True
            else:
                if self._degraded:
                    log.info("Redis answers again: log-ins and pairing codes counted in Redis")
                self._degraded = False
                return result, counter
        return await action(self.local), self.local

    async def close(self) -> None:
        if self.shared is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self.shared.redis.aclose()


def in_words(seconds: int) -> str:
    """`seconds` as a person would say it: "40 seconds", "1 minute", "14 minutes"."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
