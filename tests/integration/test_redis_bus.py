"""The Redis bus: pushes cross processes, and a Redis outage is survived."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import WsDevice
from support.espai import add_device, new_tenant, wait_online
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


async def _health(server: Server) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        doc: dict[str, object] = (await http.get(f"{server.url}/healthz")).json()
    return doc


async def test_a_redis_outage_is_survived_and_reported(pair: tuple[Server, Server],
                                                       redis_server: PrivateRedis) -> None:
    first, second = pair
    token = first.register()
    device = await WsDevice.connect(first.ws_url, token)
    assert (await _health(first))["status"] == "ok"
    redis_server.stop()
    deadline = time.monotonic() + 10
    while (await _health(first))["status"] != "degraded":
        assert time.monotonic() < deadline, "the outage was not reported"
        await asyncio.sleep(0.1)
    # Traffic that needs no other process keeps working.
    assert (await device.request(100, name="during", value=1))["code"] == 200
    redis_server.start()
    deadline = time.monotonic() + 15
    while (await _health(first))["status"] != "ok" or (await _health(second))["status"] != "ok":
        assert time.monotonic() < deadline, "the bus did not come back"
        await asyncio.sleep(0.1)
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

    async def status(server: Server) -> dict[str, object]:
        async with httpx.AsyncClient() as http:
            doc = (await http.get(f"{server.url}/api/v1/devices/{token}/status")).json()
        result: dict[str, object] = doc["data"]
        return result

    deadline = time.monotonic() + 5
    while (await status(second))["online"] is not True:
        assert time.monotonic() < deadline, "the other process never saw the device online"
        await asyncio.sleep(0.05)
    assert (await status(second))["transports"] == ["websocket"]
    await device.close()
    deadline = time.monotonic() + 5
    while (await status(second))["online"] is not False:
        assert time.monotonic() < deadline, "the other process never saw the device go"
        await asyncio.sleep(0.05)


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
    await on_second.close()  # still held by the first process
    await asyncio.sleep(0.5)
    assert (await asyncio.to_thread(wait_online, second, tenant, mac, "1"))["is_online"] == "1"
    await on_first.close()
    await asyncio.to_thread(wait_online, second, tenant, mac, "0")
