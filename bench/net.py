"""Loopback sockets spread over several source addresses, so ephemeral ports never run out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
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
