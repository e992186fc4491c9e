"""A process keeps nothing per registered device: tens of thousands of registrations and token
lookups leave its memory where it was (a device cache once grew by about 480 bytes per device,
forever)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.server import Server

from bench.httpclient import RawConnection, ezdata_data, random_mac, register_body
from bench.stats import rss_bytes

BATCH = 8_000
CONNECTIONS = 8
ALLOWED_GROWTH = 2 * 1024 * 1024  # 8,000 devices cached at ~530 B took 4.2 MB




async def _register_and_look_up(server: Server, count: int) -> None:
    """`count` new devices registered and each looked up once by its token."""
    async def one_connection(index: int, share: int) -> None:
        connection = RawConnection("127.0.0.1", server.http_port, f"127.0.0.{2 + index}")
        try:
            for _ in range(share):
                token = ezdata_data(*await connection.post("/api/v2/device/registerMac",
                                                           register_body(random_mac())))
                ezdata_data(*await connection.request("GET", f"/api/v2/{token}/list"))
        finally:
            await connection.close()

    await asyncio.gather(*(one_connection(i, count // CONNECTIONS) for i in range(CONNECTIONS)))


@pytest.fixture
def lone_server(tmp_path: Path) -> Server:
    return Server(tmp_path / "data").start()


async def test_registered_devices_cost_the_process_no_memory(lone_server: Server) -> None:
    assert lone_server.process is not None
    pid = lone_server.process.pid
    await _register_and_look_up(lone_server, BATCH)  # the allocator settles
    before = rss_bytes(pid)
    await _register_and_look_up(lone_server, BATCH)
    growth = rss_bytes(pid) - before
    print(f"RSS growth over {BATCH} more devices: {growth} bytes")
    assert growth < ALLOWED_GROWTH, f"{growth} bytes more after {BATCH} more devices"
    assert lone_server.stop() == 0
