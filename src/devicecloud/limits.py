"""Limits with reasons, by name, set with `--limit NAME=RATE[:BURST]` or `--limit NAME=N`.

A rate (`device.messages`, `ip.connects`, `ip.register`, `ip.logins`, `account.api`) is a token
bucket per key (a device, an address, an account): RATE is `50/s`, `30/min` or `1000/h`, BURST
(how many may come at once) defaults to one second's worth, at least 1. A cap (`ip.connections`,
`device.fields`) is a whole number: at most that many at once. Either may be `off`.

Without Redis every process counts in its own memory. With one (`--bus-url`) the counts are the
whole server's: a process leases a few tokens of a key's bucket at a time from Redis (one
atomic script: refill, take up to a lease) and spends them locally, so a request mostly costs
no round trip; over any span t the server lets through at most rate·t + burst, plus what each
process still holds of its last lease (a fifth of a second's worth, spent within
`LEASE_SECONDS` or dropped). While Redis cannot be reached each process counts alone, with one
log line when that starts and one when it ends.

Every refusal is counted by name (`refused`, the metric `devicecloud_rate_limited_total`) and
logged once per key per minute.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from devicecloud.core.errors import TooMany
from devicecloud.limit_counts import (
    MAX_KEYS,
    Buckets,
    Connections,
    MemoryConnections,
    RedisBuckets,
    RedisConnections,
)

log = logging.getLogger(__name__)

_PER = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
LEASE_SHARE = 0.2  # a lease is this many seconds' worth of a key's rate (at least 1, at most burst)
LEASE_SECONDS = 1.0  # what is left of a lease after this long is dropped
REDIS_TIMEOUT = 1.0  # seconds; slower than this counts as unreachable
RETRY_REDIS = 5.0  # seconds of counting locally before Redis is tried again
LOG_EVERY = 60.0  # a key's refusals are logged at most once in this many seconds

DEFAULTS = {
    # A device sends a request when a value changes or a loop turns: a few a second, a busy
    # UiFlow loop a few dozen. 100/s sustained is no device's work, 1,000 at once a resync after
    # a reconnect; beyond that a device (or a stolen token) would take the writer from others.
    "device.messages": "100/s:1000",
    # New connections per address: a classroom or a factory behind one NAT address reconnects
    # at once after a server restart (the burst); HTTP devices without keep-alive open one a
    # request. 100/s sustained is a fleet of hundreds polling every second.
    "ip.connects": "100/s:2000",
    # A device registers once a boot (a Tab5 every 2 s while it fails), and a classroom behind
    # one address boots together; beyond that one address may not sweep MACs for tokens.
    "ip.register": "10/s:200",
    # Failed console log-ins per address: 20 at once, then one every 45 s (20 per 15 minutes), a
    # whole office mistyping; guessing needs millions. See docs/console.md.
    "ip.logins": "80/h:20",
    # ESP-AI API calls per account: a third-party server managing its devices makes a few a
    # second, a batch job a few dozen.
    "account.api": "50/s:500",
    # Open connections per address: every device of a large site behind one NAT address, each
    # with an MQTT and a WebSocket connection, stays far below; it bounds the file descriptors
    # one address can hold.
    "ip.connections": "5000",
    # Fields per device: a device shows a few dozen; the store keeps this many at most anyway
    # (a list of them is one answer a device must be able to read).
    "device.fields": "1000",
}
CAPS = frozenset({"ip.connections", "device.fields"})
SUBJECTS = {"device": "device id", "ip": "address", "account": "account"}


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int
    text: str

    def __str__(self) -> str:
        return self.text


def parse_rate(text: str) -> Rate | None:
    """`50/s`, `30/min:60` ... as a Rate; None for `off`; ValueError for anything else."""
    spec = text.strip().lower()
    if spec == "off":
        return None
    rate_text, _, burst_text = spec.partition(":")
    count, _, unit = rate_text.partition("/")
    try:
        amount = float(count)
        if not math.isfinite(amount):
            raise ValueError
        per_second = amount / _PER[unit]
        burst = int(burst_text) if burst_text else max(1, math.ceil(per_second))
    except (KeyError, ValueError):
        raise ValueError(f"not a rate: {text!r} (say 50/s, 30/min, 1000/h[:BURST] "
                         "or off)") from None
    if amount <= 0 or burst < 1:
        raise ValueError(f"not a rate: {text!r} (it must allow at least one)")
    return Rate(per_second, burst, rate_text)


def parse_cap(text: str) -> int | None:
    """`500` as 500; None for `off`; ValueError for anything else."""
    spec = text.strip().lower()
    if spec == "off":
        return None
    if not spec.isascii() or not spec.isdigit() or int(spec) < 1:
        raise ValueError(f"not a cap: {text!r} (say a whole number, at least 1, or off)")
    return int(spec)


def parse_limits(items: Iterable[str]) -> dict[str, Rate | int | None]:
    """The defaults overridden by `NAME=RATE[:BURST]` (or `NAME=N` for a cap) items; ValueError
    names what is wrong."""
    chosen = {name: _parse(name, text) for name, text in DEFAULTS.items()}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULTS:
            raise ValueError(f"--limit {item!r}: say NAME=RATE[:BURST] (or NAME=N for "
                             f"{' and '.join(sorted(CAPS))}) with NAME one of "
                             f"{', '.join(sorted(DEFAULTS))}")
        try:
            chosen[name] = _parse(name, text)
        except ValueError as problem:
            raise ValueError(f"--limit {item!r}: {problem}") from None
    return chosen


def _parse(name: str, text: str) -> Rate | int | None:
    return parse_cap(text) if name in CAPS else parse_rate(text)


def source_address(host: str) -> str:
    """An address as the limits per address count it: an IPv6 address by its /64 network, which
    one subscriber usually has whole; an IPv4-mapped one as IPv4."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Shared:
    """A Redis client the limits count in, or none; after a failure every limit counts locally
    for `RETRY_REDIS` seconds, with one log line when that starts and one when it ends."""

    def __init__(self, redis: Redis | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.clock = clock
        self._retry_at = -math.inf
        self._down = False

    def usable(self) -> bool:
        return self.redis is not None and self.clock() >= self._retry_at

    def failed(self, problem: Exception) -> None:
        if not self._down:
            log.warning("Redis unreachable (%s): the limits are counted in this process only "
                        "until it answers", problem)
        self._down = True
        self._retry_at = self.clock() + RETRY_REDIS

    def worked(self) -> None:
        if self._down:
            log.info("Redis answers again: the limits are counted for the whole server")
        self._down = False

    async def close(self) -> None:
        if self.redis is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self.redis.aclose()


_UNREACHABLE = (RedisError, OSError, TimeoutError)
Key = str | int  # an address, or a device's or an account's id


class _Refusals:
    """Counts a limit's refusals and logs them, once per key per `LOG_EVERY` seconds."""

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        self.name = name
        self.refused = 0
        self._subject = SUBJECTS[name.partition(".")[0]]
        self._logged: dict[Key, float] = {}
        self._clock = clock

    def count(self, key: Key, why: str) -> None:
        self.refused += 1
        now = self._clock()
        if now - self._logged.get(key, -math.inf) < LOG_EVERY:
            return
        if len(self._logged) >= MAX_KEYS:  # bounded: forget who was logged long enough ago
            self._logged = {k: t for k, t in self._logged.items() if now - t < LOG_EVERY}
            if len(self._logged) >= MAX_KEYS:
                return
        self._logged[key] = now
        log.warning("%s %s refused: %s (further refusals of it unlogged for %g s)",
                    self._subject, key if key != "" else "-", why, LOG_EVERY)


class _Lease:
    __slots__ = ("refusing", "tokens", "until")

    def __init__(self, tokens: int, until: float, refusing: bool) -> None:
        self.tokens, self.until, self.refusing = tokens, until, refusing


class Limit(_Refusals):
    """One named rate, counted per key, in memory or leased from shared buckets.

    `check(key)` answers at once when it can: 0 to go ahead (counted), the seconds to wait if
    refused, None if a lease must be fetched first: then `await acquire(key)` answers.

    In memory a key's bucket is kept as one number, the time it will be full again less one
    token's worth (GCRA, the token bucket's arithmetic in one float): a request may go ahead
    while that time is at most `(burst - 1) / rate` ahead, and moves it on by `1 / rate`."""

    check: Callable[[Key], float | None]

    def __init__(self, name: str, rate: Rate | None, shared: Shared | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, clock)
        self.rate = rate
        self.shared = shared if shared is not None and shared.redis is not None else None
        self.buckets: Buckets | None = (RedisBuckets(self.shared.redis)
                                        if self.shared is not None and self.shared.redis
                                        else None)
        self._full_at: dict[Key, float] = {}
        self._interval = 1.0 / rate.per_second if rate is not None else 0.0
        self._tolerance = (rate.burst - 1) * self._interval if rate is not None else 0.0
        self._leases: OrderedDict[Key, _Lease] = OrderedDict()
        self.lease_size = 1 if rate is None else max(1, min(
            rate.burst, math.ceil(rate.per_second * LEASE_SHARE)))
        if rate is None:
            self.check = _go_ahead
        elif self.shared is None:
            self.check = self._check_here
        else:
            self.check = self._check_leased

    def _check_here(self, key: Key) -> float:
        """Counted in this process's memory (the hot path: keep it short)."""
        now = self._clock()
        due = self._full_at.get(key, now)
        if due < now:
            due = now
        elif due - now > self._tolerance:
            return self._refuse(key, due - now - self._tolerance)
        self._full_at[key] = due + self._interval
        if len(self._full_at) > MAX_KEYS:
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Forget the keys whose buckets are full again (as a new key's is); if none, the
        older half."""
        kept = {key: due for key, due in self._full_at.items() if due > now}
        if len(kept) > MAX_KEYS // 2:
            kept = dict(sorted(kept.items(), key=lambda item: item[1])[len(kept) // 2:])
        self._full_at = kept

    def _check_leased(self, key: Key) -> float | None:
        assert self.shared is not None
        if not self.shared.usable():
            return self._check_here(key)
        lease = self._leases.get(key)
        if lease is not None:
            now = self._clock()
            if now < lease.until:
                if lease.refusing:
                    return self._refuse(key, lease.until - now)
                if lease.tokens:
                    lease.tokens -= 1
                    return 0.0
        return None

    async def acquire(self, key: Key) -> float:
        """Fetch a lease of `key`'s tokens from the shared buckets and spend one of it (or, if
        Redis cannot be reached, count locally)."""
        rate = self.rate
        if rate is None or self.shared is None or self.buckets is None:
            return self.check(key) or 0.0
        now = self._clock()
        try:
            taken, wait = await self.buckets.take(f"{self.name}:{key}", rate, self.lease_size,
                                                  now)
        except _UNREACHABLE as problem:
            self.shared.failed(problem)
            return self._check_here(key)
        self.shared.worked()
        self._leases.pop(key, None)
        if taken:
            self._leases[key] = _Lease(taken - 1, now + LEASE_SECONDS, False)
        else:
            self._leases[key] = _Lease(0, now + wait, True)
        if len(self._leases) > MAX_KEYS:
            self._leases.popitem(last=False)
        return 0.0 if taken else self._refuse(key, wait)

    async def take(self, key: Key) -> float:
        """0 if `key` may go ahead now (counted), else the seconds until it may."""
        wait = self.check(key)
        return wait if wait is not None else await self.acquire(key)

    async def enforce(self, key: Key) -> None:
        """Count one for `key`, or raise TooMany naming the limit and when to retry."""
        wait = await self.take(key)
        if wait:
            raise TooMany(self.refusal(wait), math.ceil(wait))

    def refusal(self, wait: float) -> str:
        """What a refused client is told: the limit, and when to retry."""
        return f"rate limited: {self.name} {self.rate}, retry in {max(wait, 0.1):.1f} s"

    def _refuse(self, key: Key, wait: float) -> float:
        wait = max(wait, 1e-3)
        self.count(key, self.refusal(wait))
        return wait


def _go_ahead(key: Key) -> float:
    return 0.0


class Cap(_Refusals):
    """One named cap: at most `most` at once (None: no cap)."""

    def __init__(self, name: str, most: int | None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, clock)
        self.most = most

    def refusal(self) -> str:
        return f"limit reached: {self.name} {self.most}"


class ConnectionCap(Cap):
    """`ip.connections`: open connections per address, of this process or of every process."""

    def __init__(self, name: str, most: int | None, shared: Shared | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, most, clock)
        self.shared = shared if shared is not None and shared.redis is not None else None
        self.counts: Connections | None = (RedisConnections(self.shared.redis)
                                           if self.shared is not None and self.shared.redis
                                           else None)
        self.local = MemoryConnections()
        self._where: dict[str, list[Connections]] = {}  # where each address's opens counted

    def open_now(self, address: str) -> bool | None:
        """True if one more connection of `address` is counted, False if refused, None if the
        shared count must be asked: `await open(address)`."""
        if self.most is None:
            return True
        if self.counts is not None and self.shared is not None and self.shared.usable():
            return None
        return self._counted(address, self.local, self.local.open_now(address, self.most))

    async def open(self, address: str) -> bool:
        ready = self.open_now(address)
        if ready is not None:
            return ready
        assert self.counts is not None and self.shared is not None and self.most is not None
        try:
            opened = await self.counts.open(address, self.most)
        except _UNREACHABLE as problem:
            self.shared.failed(problem)
            return self._counted(address, self.local, self.local.open_now(address, self.most))
        self.shared.worked()
        return self._counted(address, self.counts, opened)

    def _counted(self, address: str, where: Connections, opened: bool) -> bool:
        if opened:
            self._where.setdefault(address, []).append(where)
        else:
            self.count(address, self.refusal())
        return opened

    def close(self, address: str) -> Awaitable[None] | None:
        """One connection counted by `open` closed: None when done, else what finishes it."""
        where = self._where.get(address)
        if not where:
            return None
        counted = where.pop()
        if not where:
            del self._where[address]
        if counted is self.local:
            self.local.close_now(address)
            return None
        return self._close_shared(counted, address)

    async def _close_shared(self, counts: Connections, address: str) -> None:
        with contextlib.suppress(*_UNREACHABLE):
            await counts.close(address)


class Limits(Mapping[str, "Limit | Cap"]):
    """Every limit of one process, by name (the metric reads their `refused`)."""

    def __init__(self, chosen: Mapping[str, Rate | int | None], shared: Shared | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.shared = shared or Shared(None)

        def rate(name: str) -> Limit:
            value = chosen[name]
            assert not isinstance(value, int)
            return Limit(name, value, self.shared, clock)

        def most(name: str) -> int | None:
            value = chosen[name]
            assert not isinstance(value, Rate)
            return value

        self.device_messages = rate("device.messages")
        self.ip_connects = rate("ip.connects")
        self.ip_register = rate("ip.register")
        self.ip_logins = rate("ip.logins")
        self.account_api = rate("account.api")
        self.ip_connections = ConnectionCap("ip.connections", most("ip.connections"),
                                            self.shared, clock)
        self.device_fields = Cap("device.fields", most("device.fields"), clock)
        self._by_name: dict[str, Limit | Cap] = {
            lim.name: lim for lim in (self.device_messages, self.ip_connects, self.ip_register,
                                      self.ip_logins, self.account_api, self.ip_connections,
                                      self.device_fields)}

    def __getitem__(self, name: str) -> Limit | Cap:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def admit_now(self, address: str) -> str | float | None:
        """A new connection of `address`: 0.0 if admitted (then counted under `ip.connections`:
        call `ip_connections.close` when it closes), the seconds to wait if refused by
        `ip.connects`, the refusal's text if refused by `ip.connections`; None if the shared
        counts must be asked: `await admit(address)`."""
        if self.shared.usable():
            return None
        wait = self.ip_connects.check(address) or 0.0
        if wait:
            return wait
        return 0.0 if self.ip_connections.open_now(address) else self.ip_connections.refusal()

    async def admit(self, address: str) -> str | float:
        """As `admit_now`, asking the shared counts."""
        wait = await self.ip_connects.take(address)
        if wait:
            return wait
        return 0.0 if await self.ip_connections.open(address) else self.ip_connections.refusal()

    def connect_refusal(self, verdict: str | float) -> tuple[str, int]:
        """A refused connection's message and the whole seconds to wait."""
        if isinstance(verdict, str):
            return verdict + " open connections of this address, retry in 1 s", 1
        return self.ip_connects.refusal(verdict), max(1, math.ceil(verdict))

    async def account_call(self, account_id: int) -> None:
        """Count one API request of the account (the ESP-AI API, devicecloud's own API) under
        `account.api`, or raise TooMany naming the limit and when to retry."""
        await self.account_api.enforce(account_id)

    async def close(self) -> None:
        await self.shared.close()


def limits_of(items: Iterable[str], bus_url: str = "") -> Limits:
    """The limits `--limit` items choose, shared through the Redis at `bus_url` if given."""
    redis = None
    if bus_url:
        redis = Redis.from_url(bus_url, socket_timeout=REDIS_TIMEOUT,
                               socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), 0))
    return Limits(parse_limits(items), Shared(redis))
