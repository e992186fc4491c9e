"""WebSocket scenarios: committed updates (b), latency at a fixed rate (c-ws), push latency (f)."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from bench.base import Context, Meter, Params, Scenario
from bench.httpclient import RawConnection, register_devices
from bench.stats import Latencies
from bench.wsclient import WsClient, connect

LOGIN_OK = "device Login successful"
PUSH_CMDS = frozenset({105, 106, 107, 108, 109})
DRAIN_SECONDS = 10.0


# Shared steps ------------------------------------------------------------------------------------

async def open_devices(ctx: Context, count: int,
                       concurrency: int) -> tuple[list[str], list[WsClient]]:
    """Register `count` devices, open a WebSocket for each and log it in."""
    host, port = ctx.target.host_port
    ctx.progress.status = lambda: f"registering {count:,} devices"
    tokens = await register_devices(host, port, count, ctx.sources)
    slots: list[WsClient | None] = [None] * count
    opened: list[WsClient] = []
    gate = asyncio.Semaphore(concurrency)
    ctx.progress.status = lambda: (
        f"logged in {sum(c is not None for c in slots):,}/{count:,}, connected {len(opened):,}")

    async def one(index: int) -> None:
        async with gate:
            client = await connect(host, port, "/ws", ctx.sources.next())
            opened.append(client)
            client.send(orjson.dumps({"deviceToken": tokens[index]}))
            reply = await client.recv()
            if reply != LOGIN_OK:
                raise RuntimeError(f"login refused: {reply[:200]}")
            slots[index] = client

    try:
        await asyncio.gather(*(one(index) for index in range(count)))
    except BaseException:
        await close_all(opened)
        raise
    clients = [client for client in slots if client is not None]
    return tokens, clients


async def add_fields(clients: list[WsClient], tokens: list[str], name: str = "f") -> list[str]:
    """Each device adds its field once (requestType 100); returns the names actually stored."""

    async def one(client: WsClient, token: str) -> str:
        client.send(orjson.dumps({"deviceToken": token,
                                  "body": {"requestType": 100, "name": name, "value": 0}}))
        doc = orjson.loads(await client.recv())
        if doc.get("code") != 200 or doc.get("cmd") != 100:
            raise RuntimeError(f"adding a field failed: {doc}")
        stored: str = doc["body"]["name"]
        return stored

    return list(await asyncio.gather(*(one(c, t) for c, t in zip(clients, tokens, strict=True))))


async def close_all(clients: list[WsClient], timeout: float = 5.0) -> None:
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


def _request_prefix(token: str, name: str, request_type: int = 101) -> bytes:
    return (b'{"deviceToken":"' + token.encode() + b'","body":{"requestType":' +
            str(request_type).encode() + b',"name":' + orjson.dumps(name) + b',"value":')


def _check_reply(data: bytes, cmd: int) -> tuple[bool, bool]:
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


def _common_arguments(parser: argparse.ArgumentParser, devices: int) -> None:
    parser.add_argument("--devices", type=int, default=devices, help="WebSocket devices")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connect-concurrency", type=int, default=200,
                        help="WebSocket handshakes in progress at once")


# (b) ws-updates ----------------------------------------------------------------------------------

class UpdateDriver:
    """One device keeping requests of type 101 in flight; answers arrive in request order."""

    __slots__ = ("client", "meter", "n", "prefix", "sent")

    def __init__(self, client: WsClient, token: str, name: str, meter: Meter) -> None:
        self.client = client
        self.meter = meter
        self.prefix = _request_prefix(token, name)
        self.sent: deque[float] = deque()
        self.n = 0
        client.on_message = self.on_message

    def send(self) -> None:
        self.n += 1
        self.client.send(self.prefix + str(self.n).encode() + b"}}")
        self.sent.append(time.perf_counter())

    def on_message(self, data: bytes) -> None:
        now = time.perf_counter()
        is_reply, ok = _check_reply(data, 101)
        if not is_reply:
            return
        if not self.sent:
            self.meter.failure(f"unexpected message: {data[:200]!r}")
            return
        sent_at = self.sent.popleft()
        if ok:
            self.meter.success(now - sent_at)
        else:
            self.meter.failure(data.decode("utf-8", "replace"))
        if self.meter.running and not self.client.closed:
            self.send()


async def run_updates(ctx: Context, p: Params) -> dict[str, Any]:
    """N devices each keep K updates (requestType 101) in flight for a fixed time."""
    tokens, clients = await open_devices(ctx, p["devices"], p["connect_concurrency"])
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
        await asyncio.sleep(p["warmup"])
        meter.open_window()
        ctx.window_opened(p["duration"])
        await asyncio.sleep(p["duration"])
        meter.close_window()
        ctx.window_closed()
        meter.running = False
        await wait_until(lambda: in_flight() == 0, DRAIN_SECONDS)
        result = meter.result()
        result["unanswered_at_end"] = in_flight()
        result["closed_early"] = sum(c.closed for c in clients)
        return result
    finally:
        await close_all(clients)


def _updates_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser, 1000)
    parser.add_argument("--inflight", type=int, default=4, help="requests in flight per device")


# (c-ws) ws-rate ----------------------------------------------------------------------------------

class RateDriver:
    """One device sending 101 requests when the scheduler says; latency counts from the time
    a request was due, so a slow server cannot hide its queueing (no coordinated omission)."""

    __slots__ = ("client", "meter", "n", "prefix", "sent", "service", "window")

    def __init__(self, client: WsClient, token: str, name: str, meter: Meter,
                 service: Latencies, window: list[float]) -> None:
        self.client = client
        self.meter = meter
        self.service = service
        self.window = window
        self.prefix = _request_prefix(token, name)
        self.sent: deque[tuple[float, float]] = deque()
        self.n = 0
        client.on_message = self.on_message

    def send(self, due: float) -> None:
        if self.client.closed:
            self.meter.failure("connection closed", self.window[0] <= due < self.window[1])
            return
        self.n += 1
        self.client.send(self.prefix + str(self.n).encode() + b"}}")
        self.sent.append((due, time.perf_counter()))

    def on_message(self, data: bytes) -> None:
        now = time.perf_counter()
        is_reply, ok = _check_reply(data, 101)
        if not is_reply:
            return
        if not self.sent:
            self.meter.failure(f"unexpected message: {data[:200]!r}")
            return
        due, sent_at = self.sent.popleft()
        in_window = self.window[0] <= due < self.window[1]
        if ok:
            self.meter.success(now - due, in_window)
            if in_window:
                self.service.add(now - sent_at)
        else:
            self.meter.failure(data.decode("utf-8", "replace"), in_window)


async def run_rate(ctx: Context, p: Params) -> dict[str, Any]:
    """N devices share a fixed offered rate of 101 updates (open loop); latency percentiles."""
    tokens, clients = await open_devices(ctx, p["devices"], p["connect_concurrency"])
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


def _rate_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser, 1000)
    parser.add_argument("--rate", type=float, default=2000.0,
                        help="offered updates per second, over all devices")


# (f) push ----------------------------------------------------------------------------------------

async def run_push(ctx: Context, p: Params) -> dict[str, Any]:
    """REST writes (`POST /api/v2/{token}/add`) until the device's WebSocket receives cmd 107;
    each device answers a push with a 103 request, as Tab5 does, before the next write."""
    host, port = ctx.target.host_port
    tokens, clients = await open_devices(ctx, p["devices"], p["connect_concurrency"])
    connections = [RawConnection(host, port, ctx.sources.next()) for _ in clients]
    try:
        names = await add_fields(clients, tokens)
        meter = Meter("pushes")
        http_latency = Latencies()
        ctx.progress.status = lambda: meter.line()

        async def timed_post(connection: RawConnection, path: str,
                             body: bytes) -> tuple[int, bytes, float]:
            status, reply = await connection.post(path, body)
            return status, reply, time.perf_counter()

        async def device(client: WsClient, token: str, name: str,
                         connection: RawConnection) -> None:
            path = f"/api/v2/{token}/add"
            list_request = orjson.dumps({"deviceToken": token, "body": {"requestType": 103}})
            value = 0
            if p["interval"] > 0:  # spread the devices out instead of writing in bursts
                await asyncio.sleep(random.uniform(0, p["interval"]))
            while meter.running:
                value += 1
                body = orjson.dumps({"name": name, "value": value, "dataType": "number"})
                in_window = meter.measuring
                started = time.perf_counter()
                post = asyncio.create_task(timed_post(connection, path, body))
                try:
                    push = orjson.loads(await client.recv(5.0))
                    pushed = time.perf_counter()
                    client.send(list_request)
                    listing = orjson.loads(await client.recv(5.0))
                    status, reply, replied = await asyncio.wait_for(post, 5.0)
                except (TimeoutError, ConnectionError) as problem:
                    post.cancel()
                    meter.failure(f"device {token[:8]}: {problem!r}", in_window)
                    return
                good = (push.get("cmd") == 107 and push.get("code") == 200
                        and push.get("body", {}).get("value") == value
                        and listing.get("cmd") == 103 and listing.get("code") == 200
                        and status == 200 and b'"code":200' in reply)
                if good:
                    meter.success(pushed - started, in_window)
                    if in_window:
                        http_latency.add(replied - started)
                else:
                    meter.failure(f"push {push!r} list {str(listing)[:100]} http {reply[:100]!r}",
                                  in_window)
                if p["interval"] > 0:
                    await asyncio.sleep(max(0.0, started + p["interval"] - time.perf_counter()))

        tasks = [asyncio.create_task(device(c, t, n, h))
                 for c, t, n, h in zip(clients, tokens, names, connections, strict=True)]
        await asyncio.sleep(p["warmup"])
        meter.open_window()
        ctx.window_opened(p["duration"])
        await asyncio.sleep(p["duration"])
        meter.close_window()
        ctx.window_closed()
        meter.running = False
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        result = meter.result()
        result["http_reply_latency_ms"] = http_latency.summary()
        return result
    finally:
        for connection in connections:
            await connection.close()
        await close_all(clients)


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser, 10)
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds from one write of a device to its next (default 0: "
                             "write again as soon as the push and the 103 answer are in)")


SMOKE: Params = {"devices": 5, "duration": 1.0, "warmup": 0.3}

SCENARIOS = (
    Scenario("ws-updates", "b",
             "N devices keep K requestType 101 updates in flight: committed ops/s, latency",
             _updates_arguments, SMOKE, run_updates, ("ops_per_s", "latency_ms.p50",
                                                      "latency_ms.p99", "latency_ms.p99_9")),
    Scenario("ws-rate", "c-ws",
             "latency of requestType 101 updates at a fixed offered rate (open loop)",
             _rate_arguments, {**SMOKE, "rate": 50.0}, run_rate,
             ("ops_per_s", "latency_ms.p50", "latency_ms.p99", "latency_ms.p99_9",
              "latency_from_send_ms.p50", "latency_from_send_ms.p99",
              "latency_from_send_ms.p99_9")),
    Scenario("push", "f",
             "REST write to WebSocket push (cmd 107) latency; the device answers with 103",
             _push_arguments, {**SMOKE, "devices": 2}, run_push,
             ("ops_per_s", "latency_ms.p50", "latency_ms.p99")),
)
