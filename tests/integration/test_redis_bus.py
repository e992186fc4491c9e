"""The Redis bus: pushes cross processes, and a Redis outage is survived."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.espai import add_device, new_tenant, wait_online
from support.polling import eventually
from support.server import Server, random_mac
from support.services import PrivateRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture
def pair(redis_server: PrivateRedis, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    data = tmp_path / "data"
    first = Server(data, extra_args=("--bus-url", redis_server.url)).start()
    second = Server(data, extra_args=("--bus-url", redis_server.url)).start()
    yield first, second
    for server in (first, second):
        server.stop()


async def test_a_write_through_one_process_pushes_to_a_device_on_another(
        pair: tuple[Server, Server]) -> None:
    first, second = pair
    token = first.register()
    device = await WsDevice.connect(first.ws_url, token)
    async with httpx.AsyncClient() as http:
        await http.post(f"{second.url}/api/v2/{token}/add", json={"name": "x", "value": 1})
    push = await device.recv_json()
    assert push["cmd"] == 109 and push["body"]["value"] == 1
    await device.close()


def _healthy(*servers: Server, status: str = "ok") -> bool:
    return all(httpx.get(f"{server.url}/healthz").json()["status"] == status
               for server in servers)


def _status(server: Server, token: str) -> dict[str, Any]:
    doc = httpx.get(f"{server.url}/api/v1/devices/{token}/status").json()
    return dict(doc["data"])


async def test_a_redis_outage_is_survived_and_reported(pair: tuple[Server, Server],
                                                       redis_server: PrivateRedis) -> None:
    first, second = pair
    token = first.register()
    device = await WsDevice.connect(first.ws_url, token)
    assert _healthy(first)
    redis_server.stop()
    await asyncio.to_thread(eventually, lambda: _healthy(first, status="degraded"),
                            "the outage reported", 10)
    # Traffic that needs no other process keeps working.
    assert (await device.request(100, name="during", value=1))["code"] == 200
    redis_server.start()
    await asyncio.to_thread(eventually, lambda: _healthy(first, second), "the bus back", 15)
    async with httpx.AsyncClient() as http:
        await http.post(f"{second.url}/api/v2/{token}/add", json={"name": "after", "value": 2})
    # After the gap the device is sent what changed meanwhile, with current values.
    push = await device.recv_json(timeout=5)
    while push["body"]["name"] == "during":
        assert push["body"]["value"] == 1
        push = await device.recv_json(timeout=5)
    assert push["cmd"] == 109 and push["body"]["name"] == "after"
    await device.close()


async def test_presence_is_shared_between_processes(pair: tuple[Server, Server]) -> None:
    first, second = pair
    token = first.register()
    device = await WsDevice.connect(first.ws_url, token)

    await asyncio.to_thread(eventually, lambda: _status(second, token)["online"],
                            "the other process seeing the device online")
    assert _status(second, token)["transports"] == ["websocket"]
    await device.close()
    await asyncio.to_thread(eventually, lambda: not _status(second, token)["online"],
                            "the other process seeing the device go")


async def test_espai_is_online_holds_while_any_process_holds_the_device(
        pair: tuple[Server, Server]) -> None:
    first, second = pair
    tenant = new_tenant(first)
    mac = random_mac()
    assert add_device(first, tenant, mac)["success"] is True
    token = first.register(mac=mac)
    on_first = await WsDevice.connect(first.ws_url, token)
    on_second = await WsDevice.connect(second.ws_url, token)
    await asyncio.to_thread(wait_online, first, tenant, mac, "1")
    seen = _status(second, token)["lastSeen"]
    await on_second.close()  # still held by the first process
    # Its close is taken in once the device's last sighting is recorded, after it left.
    await asyncio.to_thread(eventually, lambda: _status(second, token)["lastSeen"] != seen,
                            "the close taken in")
    assert (await asyncio.to_thread(wait_online, second, tenant, mac, "1"))["is_online"] == "1"
    await on_first.close()
    await asyncio.to_thread(wait_online, second, tenant, mac, "0")
