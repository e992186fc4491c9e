"""HTTP scenarios: device registrations per second (e)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.base import Context, Meter, Params, Scenario, measure
from bench.drivers import DRAIN_SECONDS
from bench.httpclient import (
    HttpError,
    HttpxPoster,
    Poster,
    RawConnection,
    ezdata_data,
    random_mac,
    register_body,
)

REGISTER_PATH = "/api/v2/device/registerMac"


async def run_register(ctx: Context, p: Params) -> dict[str, Any]:
    """Many concurrent keep-alive clients call registerMac in a closed loop."""
    host, port = ctx.target.host_port
    meter = Meter("registrations")
    posters: list[Poster]
    if p["client"] == "httpx":
        shared = HttpxPoster(ctx.target.url, p["clients"])
        posters = [shared] * p["clients"]
    else:
        posters = [RawConnection(host, port, ctx.sources.next()) for _ in range(p["clients"])]

    async def worker(poster: Poster) -> None:
        fixed = random_mac() if p["macs"] == "same" else None
        while meter.running:
            body = register_body(fixed or random_mac())
            started = time.perf_counter()
            try:
                ezdata_data(*await poster.post(REGISTER_PATH, body))
            except (HttpError, OSError, asyncio.IncompleteReadError, ValueError) as problem:
                meter.failure(repr(problem))
                await asyncio.sleep(0.05)
                continue
            meter.success(time.perf_counter() - started)

    ctx.progress.status = lambda: meter.line()
    tasks = [asyncio.create_task(worker(poster)) for poster in posters]
    try:
        await measure(ctx, meter, p["warmup"], p["duration"],
                      lambda: asyncio.wait(tasks, timeout=DRAIN_SECONDS))
        unfinished = sum(not task.done() for task in tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for poster in {id(x): x for x in posters}.values():
            await poster.close()
    result = meter.result()
    result["unfinished_at_end"] = unfinished
    return result


def _register_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=100,
                        help="concurrent keep-alive HTTP clients")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw asyncio HTTP/1.1 keep-alive (default) or httpx.AsyncClient")
    parser.add_argument("--macs", choices=("new", "same"), default="new",
                        help="a new MAC per request (first boot), or one MAC per client "
                             "registered again and again (reboots; registration is idempotent)")


SCENARIOS = (
    Scenario("register", "e", "registerMac requests per second from many concurrent clients",
             _register_arguments, {"clients": 4, "duration": 1.0, "warmup": 0.3}, run_register,
             ("ops_per_s", "latency_ms.p50", "latency_ms.p99"),
             # The load comes from a few addresses: measure registration, not its limit.
             ("--limit", "ip.register=off")),
)
