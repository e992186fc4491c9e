"""Connections that hold a file descriptor and do nothing are closed; running out of descriptors
is said in the log, once, and the service serves again once the timeouts free them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import secrets
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from support.mqtt_clients import RawMqtt
from support.polling import eventually
from support.server import Server, random_mac

from devicecloud.gateways.http_protocol import HEADER_LIMIT, HEADER_TIMEOUT
from devicecloud.server import KEEP_ALIVE_TIMEOUT

GRACE = 3.0  # the server's timers run on a busy shared machine
OUT_OF_FILES = "out of open files"


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (monotonic)."""
    received = b""
    async with asyncio.timeout(limit):
        with contextlib.suppress(ConnectionResetError):  # a reset after the answer is a close
            while chunk := await reader.read(65536):
                received += chunk
    return received, time.monotonic()


async def _closed_after(server: Server, start: Callable[[asyncio.StreamWriter], Awaitable[None]],
                        expected: float) -> tuple[bytes, float]:
    """Open a connection, run `start` on it (which may go on sending), and return what the server
    sent and how many seconds after opening it closed the connection."""
    reader, writer = await _open(server.http_port)
    opened = time.monotonic()
    sending = asyncio.ensure_future(start(writer))
    try:
        received, closed = await _until_closed(reader, expected + GRACE)
    finally:
        sending.cancel()
        writer.close()
    return received, closed - opened


async def _silent(writer: asyncio.StreamWriter) -> None:
    """Send nothing."""


async def _partial_upgrade(writer: asyncio.StreamWriter) -> None:
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")


async def _slowloris(writer: asyncio.StreamWriter) -> None:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    with contextlib.suppress(ConnectionError):  # until the server closes
        while True:  # one header byte every half second, never the end of the headers
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.5)


async def _upgraded_then_silent(writer: asyncio.StreamWriter) -> None:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())


async def _one_request_then_idle(writer: asyncio.StreamWriter) -> None:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")


async def _steady_requests(server: Server, every: float, count: int) -> list[bytes]:
    """`count` requests on one connection, one every `every` seconds, each sent slowly in two
    halves: the connection outlives the header timeout as long as requests keep coming."""
    reader, writer = await _open(server.http_port)
    answers = []
    try:
        for _ in range(count):
            writer.write(b"GET /healthz HTTP/1.1\r\nHo")
            await asyncio.sleep(every / 2)
            writer.write(b"st: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            answers.append(head.split(b"\r\n")[0])
            await asyncio.sleep(every / 2)
    finally:
        writer.close()
    return answers


async def test_silent_slow_and_idle_connections_are_closed(server: Server) -> None:
    started = time.monotonic()
    silent, upgrade, slow, upgraded, idle, steady = await asyncio.gather(
        _closed_after(server, _silent, HEADER_TIMEOUT),
        _closed_after(server, _partial_upgrade, HEADER_TIMEOUT),
        _closed_after(server, _slowloris, HEADER_TIMEOUT),
        _closed_after(server, _upgraded_then_silent, HEADER_TIMEOUT),
        _closed_after(server, _one_request_then_idle, KEEP_ALIVE_TIMEOUT),
        _steady_requests(server, every=3.0, count=4))
    assert silent[0] == b"" and HEADER_TIMEOUT - 1 < silent[1] < HEADER_TIMEOUT + GRACE
    for answer, seconds in (upgrade, slow):
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"not complete within 10 s" in answer
        assert HEADER_TIMEOUT - 1 < seconds < HEADER_TIMEOUT + GRACE
    assert upgraded[0].startswith(b"HTTP/1.1 101 ") and upgraded[1] < HEADER_TIMEOUT + GRACE
    assert idle[0].startswith(b"HTTP/1.1 200 ")
    assert KEEP_ALIVE_TIMEOUT - 1 < idle[1] < KEEP_ALIVE_TIMEOUT + GRACE
    assert steady == [b"HTTP/1.1 200 OK"] * 4  # 12 s on one connection, never idle for long
    assert time.monotonic() - started < 20


async def test_oversized_headers_are_refused_with_431(server: Server) -> None:
    reader, writer = await _open(server.http_port)
    # Just over the limit, in one write: by the time the server has counted past the limit it
    # has read everything, so it closes with nothing unread (a close with unread bytes would be
    # a reset, which can destroy the answer before it is read).
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    filler = HEADER_LIMIT + 64 - len(head) - len(b"X-pad: \r\n")
    writer.write(head + b"X-pad: " + b"a" * filler + b"\r\n")
    received, _ = await _until_closed(reader, 5)
    writer.close()
    assert received.startswith(b"HTTP/1.1 431 ")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{server.url}/healthz")).status_code == 200


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _until_logged(server: Server, text: str, limit: float) -> None:
    await asyncio.to_thread(eventually, lambda: text in server.log(), f"{text!r} logged", limit,
                            0.2)


async def test_running_out_of_files_is_logged_once_and_passes(own_server: Server) -> None:
    server = own_server.start()
    assert server.process is not None
    pid = server.process.pid
    mac = random_mac()
    token = server.register(mac)
    limit = _open_files(pid) + 30
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    held = [await _open(server.http_port if index % 2 else server.mqtt_port)
            for index in range(80)]
    try:
        await _until_logged(server, OUT_OF_FILES, 5)
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.HTTPError):  # closed as soon as it is accepted
                await client.get(f"{server.url}/healthz")
            # The idle connections' timeouts (10 s) free the descriptors.
            await _until_logged(server, "open files available again", HEADER_TIMEOUT + 10)
            assert (await client.get(f"{server.url}/healthz")).status_code == 200
        device = await RawMqtt.device(server.mqtt_port, token, mac)
        await device.close()
    finally:
        for _, writer in held:
            writer.close()
    log = server.log()
    assert log.count(OUT_OF_FILES) == 1, log
    assert "Traceback" not in log


def _limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_open_files_soft_limit_is_raised_to_the_hard_limit(own_server: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip("needs a finite hard limit above 256")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the child inherits it
    try:
        server = own_server.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert server.process is not None
    assert _limits(server.process.pid) == (hard, hard)
