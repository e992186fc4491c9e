"""One load-generator process of the idle-connections scenario (d): it opens its share of MQTT
device connections and holds them, pinging at the keepalive, until told to close.

Stdin: one JSON line `{"host", "port", "keepalive", "sources", "concurrency", "devices":
[[mac, token], ...]}` (and `"ca_file"`: over TLS, trusting that CA), later `close`. Stdout:
`progress <connected> <failed>` lines, `ready <connected> <failed> <first error>` once every
attempt ended, `closed` at the end.
A process may hold 20,000 open files: the scenario spreads its connections over several.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import sys
from typing import Any

import orjson

from bench.mqttclient import MqttClient, connect_device


async def hold(job: dict[str, Any]) -> None:
    clients: list[MqttClient] = []
    failed = 0
    first_error = ""
    sources = itertools.cycle(job["sources"])
    gate = asyncio.Semaphore(job["concurrency"])
    tls = ssl.create_default_context(cafile=job["ca_file"]) if job.get("ca_file") else None

    async def one(mac: str, token: str) -> None:
        nonlocal failed, first_error
        async with gate:
            try:
                clients.append(await connect_device(job["host"], job["port"], mac, token,
                                                    keepalive=job["keepalive"],
                                                    source=next(sources), tls=tls))
            except (OSError, TimeoutError, ConnectionError) as problem:
                failed += 1
                first_error = first_error or repr(problem)[:200]

    async def report() -> None:
        while True:
            await asyncio.sleep(0.5)
            print(f"progress {len(clients)} {failed}", flush=True)

    reporter = asyncio.create_task(report())
    await asyncio.gather(*(one(mac, token) for mac, token in job["devices"]))
    reporter.cancel()
    print(f"ready {len(clients)} {failed} {first_error}".rstrip(), flush=True)
    loop = asyncio.get_running_loop()
    command = asyncio.ensure_future(loop.run_in_executor(None, sys.stdin.readline))
    while not command.done():  # ping each connection once per half keepalive
        await asyncio.wait([command], timeout=job["keepalive"] / 2)
        for client in clients:
            client.ping()
    for client in clients:
        client.close()
    await asyncio.sleep(0.5)
    print(f"closed {sum(c.closed for c in clients)}", flush=True)


def main() -> int:
    job = orjson.loads(sys.stdin.readline())
    try:
        import uvloop
        uvloop.run(hold(job))
    except ImportError:
        asyncio.run(hold(job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
