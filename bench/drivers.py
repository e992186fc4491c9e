"""EzData request drivers shared by every transport: a device client (WebSocket or MQTT) is
anything with `send`, `recv`, `close`, `closed` and an `on_message` callback."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import orjson

from bench.base import Context, Meter, Params, measure
from bench.stats import Latencies

PUSH_CMDS = frozenset({105, 106, 107, 108, 109})
DRAIN_SECONDS = 10.0
Entry = TypeVar("Entry")


class DeviceClient(Protocol):
    """One device connection speaking EzData: messages are the JSON envelopes."""

    on_message: Callable[[bytes], None] | None
    closed: bool

    def send(self, payload: bytes) -> None: ...

    async def recv(self, timeout: float = 10.0) -> str: ...

    def close(self) -> None: ...


# Opens `count` logged-in device connections: (tokens, clients), in the same order.
Opener = Callable[[Context, Params], Awaitable[tuple[list[str], list[Any]]]]


def request_prefix(token: str, name: str, request_type: int = 101) -> bytes:
    """A request up to its value: append the value and `}}`."""
    return (b'{"deviceToken":"' + token.encode() + b'","body":{"requestType":' +
            str(request_type).encode() + b',"name":' + orjson.dumps(name) + b',"value":')


def check_reply(data: bytes, cmd: int) -> tuple[bool, bool]:
    """(is a reply rather than a push, is a successful reply to `cmd`)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return True, False
    if not isinstance(doc, dict):
        return True, False
    got = doc.get("cmd")
    if got in PUSH_CMDS:
        return False, False
    return True, doc.get("code") == 200 and got == cmd


async def add_fields(clients: list[Any], tokens: list[str], name: str = "f") -> list[str]:
    """Each device adds its field once (requestType 100); returns the names actually stored."""

    async def one(client: DeviceClient, token: str) -> str:
        client.send(orjson.dumps({"deviceToken": token,
                                  "body": {"requestType": 100, "name": name, "value": 0}}))
        doc = orjson.loads(await client.recv())
        if doc.get("code") != 200 or doc.get("cmd") != 100:
            raise RuntimeError(f"adding a field failed: {doc}")
        stored: str = doc["body"]["name"]
        return stored

    return list(await asyncio.gather(*(one(c, t) for c, t in zip(clients, tokens, strict=True))))


async def close_all(clients: list[Any], timeout: float = 5.0) -> None:
    """Close every connection and give the server a moment to see them go."""
    for client in clients:
        client.close()
    deadline = time.perf_counter() + timeout
    while any(not c.closed for c in clients) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)


async def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Driver(Generic[Entry]):
    """One device sending 101 requests; answers arrive in request order, each matched to the
    oldest entry in `sent` and handed to `answered`."""

    __slots__ = ("client", "meter", "n", "prefix", "sent")

    def __init__(self, client: DeviceClient, token: str, name: str, meter: Meter) -> None:
        self.client = client
        self.meter = meter
        self.prefix = request_prefix(token, name)
        self.sent: deque[Entry] = deque()
        self.n = 0
        client.on_message = self.on_message

    def _send(self) -> None:
        self.n += 1
        self.client.send(self.prefix + str(self.n).encode() + b"}}")

    def on_message(self, data: bytes) -> None:
        now = time.perf_counter()
        is_reply, ok = check_reply(data, 101)
        if not is_reply:
            return
        if not self.sent:
            self.meter.failure(f"unexpected message: {data[:200]!r}")
            return
        self.answered(now, self.sent.popleft(), ok, data)

    def answered(self, now: float, entry: Entry, ok: bool, data: bytes) -> None:
        raise NotImplementedError


class UpdateDriver(Driver[float]):
    """Closed loop: every answer sends the next request while the meter runs."""

    __slots__ = ()

    def send(self) -> None:
        self._send()
        self.sent.append(time.perf_counter())

    def answered(self, now: float, entry: float, ok: bool, data: bytes) -> None:
        if ok:
            self.meter.success(now - entry)
        else:
            self.meter.failure(data.decode("utf-8", "replace"))
        if self.meter.running and not self.client.closed:
            self.send()


class RateDriver(Driver[tuple[float, float]]):
    """Open loop: sends when the scheduler says; latency counts from the time a request was due,
    so a slow server cannot hide its queueing (no coordinated omission)."""

    __slots__ = ("service", "window")

    def __init__(self, client: DeviceClient, token: str, name: str, meter: Meter,
                 service: Latencies, window: list[float]) -> None:
        super().__init__(client, token, name, meter)
        self.service = service
        self.window = window

    def send(self, due: float) -> None:
        if self.client.closed:
            self.meter.failure("connection closed", self.window[0] <= due < self.window[1])
            return
        self._send()
        self.sent.append((due, time.perf_counter()))

    def answered(self, now: float, entry: tuple[float, float], ok: bool, data: bytes) -> None:
        due, sent_at = entry
        in_window = self.window[0] <= due < self.window[1]
        if ok:
            self.meter.success(now - due, in_window)
            if in_window:
                self.service.add(now - sent_at)
        else:
            self.meter.failure(data.decode("utf-8", "replace"), in_window)


async def run_updates(ctx: Context, p: Params, opener: Opener) -> dict[str, Any]:
    """N devices each keep K updates (requestType 101) in flight for a fixed time."""
    tokens, clients = await opener(ctx, p)
    try:
        names = await add_fields(clients, tokens)
        meter = Meter("updates")
        drivers = [UpdateDriver(c, t, n, meter) for c, t, n in zip(clients, tokens, names,
                                                                    strict=True)]

        def in_flight() -> int:
            return sum(len(d.sent) for d in drivers)

        ctx.progress.status = lambda: meter.line(f"in flight {in_flight():,}")
        for driver in drivers:
            for _ in range(p["inflight"]):
                driver.send()
        await measure(ctx, meter, p["warmup"], p["duration"],
                      lambda: wait_until(lambda: in_flight() == 0, DRAIN_SECONDS))
        result = meter.result()
        result["unanswered_at_end"] = in_flight()
        result["closed_early"] = sum(c.closed for c in clients)
        return result
    finally:
        await close_all(clients)


async def run_rate(ctx: Context, p: Params, opener: Opener) -> dict[str, Any]:
    """N devices share a fixed offered rate of 101 updates (open loop); latency percentiles."""
    tokens, clients = await opener(ctx, p)
    try:
        names = await add_fields(clients, tokens)
        meter = Meter("updates")
        service = Latencies()
        window = [float("inf"), float("inf")]
        drivers = [RateDriver(c, t, n, meter, service, window)
                   for c, t, n in zip(clients, tokens, names, strict=True)]

        def in_flight() -> int:
            return sum(len(d.sent) for d in drivers)

        ctx.progress.status = lambda: meter.line(f"in flight {in_flight():,}")
        rate = float(p["rate"])
        start = time.perf_counter()
        opens = start + p["warmup"]
        ends = opens + p["duration"]
        sent = 0
        late = 0.0
        while True:
            now = time.perf_counter()
            if now >= ends:
                break
            if not meter.measuring and now >= opens:
                window[0], window[1] = opens, ends
                meter.open_window()
                meter.window_start = opens
                ctx.window_opened(p["duration"])
            due_count = int((now - start) * rate) + 1  # request i is due at i / rate
            while sent < due_count:
                due = start + sent / rate
                late = max(late, now - due)
                drivers[sent % len(drivers)].send(due)
                sent += 1
            # Timers tick in whole milliseconds (uvloop): sleeping less would spin the CPU.
            await asyncio.sleep(max(0.001, start + sent / rate - time.perf_counter()))
        meter.close_window()
        ctx.window_closed()
        meter.window_end = ends
        meter.running = False
        await wait_until(lambda: in_flight() == 0, DRAIN_SECONDS)
        result = meter.result()
        result["offered_per_s"] = rate
        result["latency_from_send_ms"] = service.summary()
        result["worst_scheduler_lag_ms"] = round(late * 1000, 3)
        result["unanswered_at_end"] = in_flight()
        return result
    finally:
        await close_all(clients)


def common_arguments(parser: argparse.ArgumentParser, devices: int) -> None:
    parser.add_argument("--devices", type=int, default=devices, help="devices (connections)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connect-concurrency", type=int, default=200,
                        help="connection handshakes in progress at once")


def updates_arguments(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser, 1000)
    parser.add_argument("--inflight", type=int, default=4, help="requests in flight per device")


def rate_arguments(parser: argparse.ArgumentParser, rate: float) -> None:
    common_arguments(parser, 1000)
    parser.add_argument("--rate", type=float, default=rate,
                        help="offered updates per second, over all devices")
