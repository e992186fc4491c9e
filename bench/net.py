"""Loopback sockets spread over several source addresses, so ephemeral ports never run out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections import deque
from urllib.parse import urlsplit

# Linux: pick the source port at connect() time (per 4-tuple), not at bind() time (per address).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Sources:
    """Round-robin over the source addresses 127.0.0.2, 127.0.0.3, ... (loopback only)."""

    def __init__(self, count: int = 8) -> None:
        if not 1 <= count <= 250:
            raise ValueError("between 1 and 250 source addresses")
        self.addresses = [f"127.0.0.{2 + i}" for i in range(count)]
        self._next = itertools.cycle(self.addresses)

    def next(self) -> str:
        return next(self._next)


def split_url(url: str) -> tuple[str, int]:
    """Host and port of an http:// or ws:// URL; only loopback targets are allowed."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    if not host.startswith("127."):
        raise ValueError(f"the load generator targets loopback only, not {host}")
    return host, parts.port or 80


async def open_socket(host: str, port: int, source: str | None) -> socket.socket:
    """A connected, non-blocking TCP socket from `source` (any port) to host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Inbox:
    """Received messages kept for `await recv()` (setup steps and low-rate scenarios; the hot
    path hands them to a callback instead). Mixed into the WebSocket and MQTT clients."""

    closed: bool

    def __init__(self) -> None:
        self._inbox: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None

    async def recv(self, timeout: float = 10.0) -> str:
        """The next message, decoded."""
        async with asyncio.timeout(timeout):
            while not self._inbox:
                if self.closed:
                    raise ConnectionError("connection closed")
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        return self._inbox.popleft().decode("utf-8", "replace")

    def _keep(self, payload: bytes) -> None:
        self._inbox.append(payload)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
