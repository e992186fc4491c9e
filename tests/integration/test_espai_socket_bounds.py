"""The ESP-AI firmware socket holds a bounded number of messages for a firmware that does not read,
then drops it; a firmware that reads gets every message."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import time
from urllib.parse import urlencode

import httpx
from support.espai import Firmware, Tenant, add_device, colon_mac, listed, new_tenant, wait_online
from support.server import Server, random_mac

from bench.stats import rss_bytes
from devicecloud.core.espai.values import LOCAL_DATA_LIMIT
from devicecloud.gateways.espai_ws import SEND_QUEUE_LIMIT

PUSHES = 1500
FILLER = "x" * (LOCAL_DATA_LIMIT - 200)  # each push about 8 KB: 12 MB in all
MB = 1024 * 1024


def _rss_mb(server: Server) -> float:
    assert server.process is not None
    return rss_bytes(server.process.pid) / (1024 * 1024)


def _silent_firmware(server: Server, mac: str, api_key: str) -> socket.socket:
    """A firmware socket, upgraded, with a small receive buffer that is never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.http_port))
    query = urlencode({"device_type": "hardware", "device_id": colon_mac(mac),
                       "version": "1.22.34", "api_key": api_key, "ext2": "", "ext3": "1"})
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    sock.sendall(f"GET /connect_espai_node?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing past the handshake is taken
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Read what is left; True once the server has closed (or reset) the connection."""
    deadline = time.monotonic() + 10
    with contextlib.suppress(ConnectionResetError):
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    return True
            except TimeoutError:
                return False
    return True


async def _push(server: Server, tenant: Tenant, device_id: object, numbers: range,
                filler: str = "") -> None:
    """`/devices/update` with a new `localData` for each number, eight requests at a time."""
    async with httpx.AsyncClient(headers={"authorization": tenant.open_api_key},
                                 timeout=30) as client:
        async def one(number: int) -> None:
            reply = await client.post(f"{server.url}/devices/update", json={
                "id": device_id, "localData": {"n": number, "filler": filler}})
            assert reply.json()["success"] is True, reply.text

        for start in range(numbers.start, numbers.stop, 8):
            await asyncio.gather(*(one(n) for n in range(start, min(start + 8, numbers.stop))))


def _device_id(server: Server, tenant: Tenant, mac: str) -> object:
    add_device(server, tenant, mac)
    return listed(server, tenant, device_id=mac)["data"][0]["id"]


async def test_a_firmware_that_never_reads_is_dropped_with_memory_bounded(
        server: Server) -> None:
    tenant = new_tenant(server)
    mac = random_mac()
    device_id = _device_id(server, tenant, mac)
    await _push(server, tenant, device_id, range(100), FILLER)  # warm up the server
    firmware = _silent_firmware(server, mac, tenant.api_key)
    try:
        wait_online(server, tenant, mac, "1")
        before = _rss_mb(server)
        await _push(server, tenant, device_id, range(100, 100 + PUSHES), FILLER)
        grown = _rss_mb(server) - before
        assert grown < 6, f"RSS grew {grown:.1f} MB for {PUSHES} pushes of 8 KB, none read"
        wait_online(server, tenant, mac, "0")  # the server dropped the socket
        assert _closed_by_server(firmware)
    finally:
        firmware.close()


async def test_a_firmware_that_reads_gets_every_message(server: Server) -> None:
    tenant = new_tenant(server)
    mac = random_mac()
    device_id = _device_id(server, tenant, mac)
    firmware = await Firmware.connect(server, mac, tenant.api_key)
    wait_online(server, tenant, mac, "1")
    count = 2 * SEND_QUEUE_LIMIT
    received: set[str] = set()

    async def read() -> None:
        while len(received) < count:
            message = await firmware.recv(10)
            assert message["type"] == "set_local_data"
            received.add(message["data"]["n"])

    reading = asyncio.ensure_future(read())
    await _push(server, tenant, device_id, range(count))
    await asyncio.wait_for(reading, 20)
    assert received == {str(n) for n in range(count)}
    assert listed(server, tenant, device_id=mac)["data"][0]["is_online"] == "1"
    await firmware.close()
