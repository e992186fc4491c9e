"""Stopping and restarting: acknowledged writes survive, in-flight ones are answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import httpx
from support.clients import WsDevice
from support.server import Server
from websockets.exceptions import ConnectionClosed


async def _flood(device: WsDevice, count: int, acked: set[str]) -> None:
    """Send `count` adds without waiting, and collect the names acknowledged with code 200."""
    for i in range(count):
        await device.send({"deviceToken": device.token,
                           "body": {"requestType": 100, "name": f"n{i}", "value": i}})
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            reply = json.loads(await device.recv(timeout=5))
            if reply["code"] == 200:
                acked.add(reply["body"]["name"])


async def test_sigterm_answers_in_flight_writes_and_keeps_every_acknowledged_one(
        own_server: Server) -> None:
    own_server.start()
    tokens = [own_server.register() for _ in range(4)]
    devices = [await WsDevice.connect(own_server.ws_url, token) for token in tokens]
    acked: dict[str, set[str]] = {token: set() for token in tokens}
    floods = [asyncio.create_task(_flood(d, 1500, acked[d.token])) for d in devices]
    await asyncio.sleep(0.05)
    assert own_server.process is not None
    own_server.process.send_signal(signal.SIGTERM)
    await asyncio.gather(*floods)
    assert await asyncio.to_thread(own_server.process.wait, 30) == 0, own_server.log()
    assert sum(map(len, acked.values())) > 0

    own_server.start()
    async with httpx.AsyncClient() as http:
        for token in tokens:
            rows = (await http.get(f"{own_server.url}/api/v2/{token}/list")).json()["data"]
            stored = {row["name"] for row in rows["rows"]}
            assert acked[token] <= stored, "an acknowledged write was lost"
    assert own_server.stop() == 0


async def test_data_and_tokens_survive_a_restart(own_server: Server) -> None:
    own_server.start()
    token = own_server.register(mac="a0:b1:c2:d3:e4:f5")
    device = await WsDevice.connect(own_server.ws_url, token)
    await device.request(100, name="kept", value={"a": 1})
    await device.close()
    assert own_server.stop() == 0
    own_server.start()
    assert own_server.register(mac="A0B1C2D3E4F5") == token
    device = await WsDevice.connect(own_server.ws_url, token)
    assert (await device.request(104, name="kept"))["body"]["value"] == {"a": 1}
    await device.close()


def test_settings_from_flags_and_environment(own_server: Server) -> None:
    own_server.extra_args = ("--public-url", "https://devices.example.org/")
    own_server.env = {"DEVICECLOUD_UPLOAD_LIMIT": "2000"}
    own_server.start()
    token = own_server.register()
    upload = f"{own_server.url}/api/v2/device/uploadDeviceFile"
    small = httpx.post(upload, data={"deviceToken": token, "name": "f"},
                       files={"file": ("a.png", b"x" * 100, "image/png")}).json()
    assert small["data"]["value"].startswith("https://devices.example.org/files/")
    big = httpx.post(upload, data={"deviceToken": token, "name": "g"},
                     files={"file": ("b.png", b"x" * 3000, "image/png")})
    assert big.status_code == 413
    assert own_server.stop(signal.SIGINT) == 0
