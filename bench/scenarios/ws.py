"""WebSocket scenarios: committed updates (b), latency at a fixed rate (c-ws), push latency (f)."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import orjson

from bench import drivers
from bench.base import Context, Meter, Params, Scenario, measure
from bench.drivers import DRAIN_SECONDS, add_fields, close_all, common_arguments
from bench.httpclient import RawConnection, register_devices
from bench.stats import Latencies
from bench.wsclient import WsClient, connect

LOGIN_OK = "device Login successful"


# Opening WebSocket devices ---------------------------------------------------------------------

async def open_devices(ctx: Context, p: Params) -> tuple[list[str], list[WsClient]]:
    """Register `p["devices"]` devices, open a WebSocket for each and log it in."""
    count, concurrency = p["devices"], p["connect_concurrency"]
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


async def run_updates(ctx: Context, p: Params) -> dict[str, Any]:
    """(b) N WebSocket devices each keep K updates (requestType 101) in flight."""
    return await drivers.run_updates(ctx, p, open_devices)


async def run_rate(ctx: Context, p: Params) -> dict[str, Any]:
    """(c-ws) N WebSocket devices share a fixed offered rate of 101 updates (open loop)."""
    return await drivers.run_rate(ctx, p, open_devices)


# (f) push ----------------------------------------------------------------------------------------

async def run_push(ctx: Context, p: Params) -> dict[str, Any]:
    """REST writes (`POST /api/v2/{token}/add`) until the device's WebSocket receives cmd 107;
    each device answers a push with a 103 request, as Tab5 does, before the next write."""
    host, port = ctx.target.host_port
    tokens, clients = await open_devices(ctx, p)
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
        await measure(ctx, meter, p["warmup"], p["duration"],
                      lambda: asyncio.wait(tasks, timeout=DRAIN_SECONDS))
        for task in tasks:
            task.cancel()
        result = meter.result()
        result["http_reply_latency_ms"] = http_latency.summary()
        return result
    finally:
        for connection in connections:
            await connection.close()
        await close_all(clients)


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser, 10)
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds from one write of a device to its next (default 0: "
                             "write again as soon as the push and the 103 answer are in)")


SMOKE: Params = {"devices": 5, "duration": 1.0, "warmup": 0.3}

SCENARIOS = (
    Scenario("ws-updates", "b",
             "N devices keep K requestType 101 updates in flight: committed ops/s, latency",
             drivers.updates_arguments, SMOKE, run_updates, ("ops_per_s", "latency_ms.p50",
                                                      "latency_ms.p99", "latency_ms.p99_9")),
    Scenario("ws-rate", "c-ws",
             "latency of requestType 101 updates at a fixed offered rate (open loop)",
             lambda parser: drivers.rate_arguments(parser, 2000.0), {**SMOKE, "rate": 50.0},
             run_rate,
             ("ops_per_s", "latency_ms.p50", "latency_ms.p99", "latency_ms.p99_9",
              "latency_from_send_ms.p50", "latency_from_send_ms.p99",
              "latency_from_send_ms.p99_9")),
    Scenario("push", "f",
             "REST write to WebSocket push (cmd 107) latency; the device answers with 103",
             _push_arguments, {**SMOKE, "devices": 2}, run_push,
             ("ops_per_s", "latency_ms.p50", "latency_ms.p99"),
             # Each device writes again as soon as its push is in, hundreds a second: measure
             # the latency, not device.messages.
             ("--limit", "device.messages=off")),
)
