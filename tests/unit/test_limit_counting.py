"""Limits: the `--limit` syntax, token-bucket arithmetic on a clock the test turns, leases of a
shared bucket (a real Redis) spent locally, connection caps across two processes' counts, and
counting alone while Redis is away."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from support.services import PrivateRedis

from devicecloud.core.errors import TooMany
from devicecloud.limit_counts import MemoryBuckets, RedisBuckets, RedisConnections
from devicecloud.limits import (
    DEFAULTS,
    LEASE_SECONDS,
    Limit,
    Limits,
    Rate,
    Shared,
    parse_cap,
    parse_limits,
    parse_rate,
    source_address,
)


class Clock:
    """Time that moves only when the test says."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# syntax -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "per_second", "burst"), [
    ("50/s", 50.0, 50), ("30/min", 0.5, 1), ("30/min:60", 0.5, 60), ("1000/h:10", 1000 / 3600, 10),
    ("2.5/s", 2.5, 3), (" 10/S:200 ", 10.0, 200)])
def test_rates_parse(text: str, per_second: float, burst: int) -> None:
    rate = parse_rate(text)
    assert rate is not None and rate.per_second == pytest.approx(per_second)
    assert rate.burst == burst


@pytest.mark.parametrize("text", ["fast", "10", "10/day", "0/s", "-1/s", "10/s:0", "10/s:x",
                                  "nan/s", "inf/s", ""])
def test_bad_rates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(text)


def test_caps_are_whole_numbers_or_off() -> None:
    assert parse_cap("500") == 500 and parse_cap(" off ") is None
    for bad in ("0", "-3", "5/s", "1.5", "٣", ""):
        with pytest.raises(ValueError, match="not a cap"):
            parse_cap(bad)


def test_every_name_has_a_default_and_items_override_it() -> None:
    chosen = parse_limits(["device.fields=500", "ip.connections=200", "device.messages=5/s:9",
                           "ip.register=off"])
    assert set(chosen) == set(DEFAULTS) == {
        "device.messages", "ip.connects", "ip.register", "ip.logins", "account.api",
        "ip.connections", "device.fields"}
    assert chosen["device.fields"] == 500 and chosen["ip.connections"] == 200
    assert chosen["device.messages"] == Rate(5.0, 9, "5/s") and chosen["ip.register"] is None
    assert isinstance(parse_limits([])["account.api"], Rate)


@pytest.mark.parametrize(("item", "says"), [
    ("nosuch=5/s", "NAME one of account.api, device.fields"), ("device.messages", "NAME=RATE"),
    ("device.fields=5/s", "not a cap"), ("ip.connects=500", "not a rate")])
def test_bad_items_name_what_is_wrong(item: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        parse_limits([item])
    assert item in str(refused.value)


def test_addresses_count_by_subscriber() -> None:
    assert source_address("192.0.2.7") == "192.0.2.7"
    assert source_address("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_address("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert source_address("") == "unknown"


# buckets ------------------------------------------------------------------------------------

def test_a_bucket_lets_its_burst_through_then_its_rate() -> None:
    clock = Clock()
    limit = Limit("device.messages", parse_rate("2/s:4"), clock=clock)
    assert [limit.check("d") for _ in range(4)] == [0.0] * 4
    assert limit.check("d") == pytest.approx(0.5)  # one token comes every half second
    clock.now += 0.25
    assert limit.check("d") == pytest.approx(0.25)
    clock.now += 0.25
    assert limit.check("d") == 0.0
    assert limit.check("other") == 0.0  # each key its own bucket
    clock.now += 100
    assert [limit.check("d") for _ in range(5)].count(0.0) == 4  # refilled to the burst only
    assert limit.refused == 3


def test_a_refusal_names_the_limit_and_the_wait() -> None:
    limit = Limit("device.messages", parse_rate("50/s"), clock=Clock())
    assert limit.refusal(0.4) == "rate limited: device.messages 50/s, retry in 0.4 s"


async def test_enforce_raises_too_many_with_whole_seconds() -> None:
    clock = Clock()
    limit = Limit("ip.register", parse_rate("1/min"), clock=clock)
    await limit.enforce("a")
    with pytest.raises(TooMany) as refused:
        await limit.enforce("a")
    assert refused.value.retry_after == 60 and "ip.register 1/min" in str(refused.value)


def test_off_lets_everything_through() -> None:
    limit = Limit("device.messages", None, clock=Clock())
    assert all(limit.check("d") == 0.0 for _ in range(10_000)) and limit.refused == 0


def test_memory_buckets_take_a_lease_of_what_is_there() -> None:
    buckets, rate = MemoryBuckets(), Rate(10.0, 5, "10/s")
    assert buckets.take_now("k", rate, 3, 0.0) == (3, 0.0)
    assert buckets.take_now("k", rate, 3, 0.0) == (2, 0.0)
    taken, wait = buckets.take_now("k", rate, 3, 0.0)
    assert taken == 0 and wait == pytest.approx(0.1)
    assert buckets.take_now("k", rate, 3, 0.25) == (2, 0.0)  # 2.5 tokens came back


def test_local_connection_cap() -> None:
    limits = Limits(parse_limits(["ip.connections=2", "ip.connects=off"]))
    assert [limits.admit_now("a") for _ in range(3)] == [
        0.0, 0.0, "limit reached: ip.connections 2"]
    assert limits.admit_now("b") == 0.0
    limits.ip_connections.close("a")
    assert limits.admit_now("a") == 0.0
    assert limits.ip_connections.refused == 1


def test_connects_are_refused_before_counting_a_connection() -> None:
    limits = Limits(parse_limits(["ip.connections=5", "ip.connects=1/min:1"]))
    assert limits.admit_now("a") == 0.0
    wait = limits.admit_now("a")
    assert isinstance(wait, float) and wait > 0
    message, retry = limits.connect_refusal(wait)
    assert message.startswith("rate limited: ip.connects 1/min, retry in") and retry >= 59
    assert limits.ip_connections.local.open_by == {"a": 1}


# shared through Redis -----------------------------------------------------------------------

@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[tuple[PrivateRedis, Redis]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    client = Redis.from_url(server.url)
    yield server, client
    await client.aclose()
    if server.process is not None and server.process.poll() is None:
        server.stop()


async def test_two_processes_leasing_one_bucket_pass_its_burst_once(
        redis: tuple[PrivateRedis, Redis]) -> None:
    clock = Clock()
    rate = parse_rate("50/s:40")  # leases of 10 (a fifth of a second's worth)
    first, second = (Limit("device.messages", rate, Shared(redis[1]), clock) for _ in range(2))
    assert first.lease_size == 10
    passed = 0
    for turn in range(100):  # alternately, as requests split over two processes would
        limit = (first, second)[turn % 2]
        wait = limit.check("d")
        if wait is None:
            wait = await limit.acquire("d")
        passed += wait == 0.0
    assert passed == 40  # the burst, once: not once per process
    assert first.refused + second.refused == 60


async def test_a_lease_is_spent_without_asking_redis(redis: tuple[PrivateRedis, Redis]) -> None:
    clock = Clock()
    limit = Limit("device.messages", parse_rate("100/s:1000"), Shared(redis[1]), clock)
    assert limit.check("d") is None  # nothing leased yet
    assert await limit.acquire("d") == 0.0
    assert [limit.check("d") for _ in range(limit.lease_size - 1)] == [0.0] * 19
    assert limit.check("d") is None  # spent: the next lease
    assert await limit.acquire("d") == 0.0
    clock.now += LEASE_SECONDS  # what is left of a lease this old is dropped
    assert limit.check("d") is None


async def test_refill_follows_the_rate_across_processes(redis: tuple[PrivateRedis, Redis]) -> None:
    clock = Clock()
    buckets = RedisBuckets(redis[1])
    rate = Rate(2.0, 2, "2/s")
    assert await buckets.take("k", rate, 5, clock.now) == (2, 0.0)
    taken, wait = await buckets.take("k", rate, 5, clock.now)
    assert taken == 0 and wait == pytest.approx(0.5)
    assert await buckets.take("k", rate, 5, clock.now + 0.5) == (1, 0.0)
    assert await buckets.take("k", rate, 5, clock.now + 100) == (2, 0.0)


async def test_a_connection_cap_counts_every_live_process(
        redis: tuple[PrivateRedis, Redis]) -> None:
    client = redis[1]
    one, two = RedisConnections(client, "one"), RedisConnections(client, "two")
    await client.set("devicecloud:instance:one", "1")
    await client.set("devicecloud:instance:two", "1")
    assert await one.open("a", 3) and await two.open("a", 3) and await one.open("a", 3)
    assert not await two.open("a", 3)
    await one.close("a")
    assert await two.open("a", 3)
    assert not await one.open("a", 3)
    # A process that died stops counting once its liveness record is gone.
    await client.delete("devicecloud:instance:two")
    three = RedisConnections(client, "three")
    assert await three.open("a", 3)


async def test_redis_away_counts_locally_and_says_so_once(
        redis: tuple[PrivateRedis, Redis], caplog: pytest.LogCaptureFixture) -> None:
    server, _ = redis
    clock = Clock()
    limits = Limits(parse_limits(["device.messages=1/min:2"]),
                    Shared(Redis.from_url(server.url, socket_timeout=1)), clock)
    server.stop()
    limit = limits.device_messages
    waits = [await limit.take("d") for _ in range(3)]
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0  # counted here meanwhile
    assert await limits.admit(source_address("192.0.2.1")) == 0.0
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    await limits.close()
