"""HTTP/1.1 for the load generator: a raw keep-alive client on asyncio streams (the default,
because it costs a fraction of httpx's CPU per request) and an httpx alternative for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any, Protocol

import orjson

from bench.net import Sources, open_socket


class HttpError(Exception):
    """An HTTP exchange that did not produce the expected answer."""


class Poster(Protocol):
    """Something that can POST a JSON body and return (status, body)."""

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class RawConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time; reconnects when closed."""

    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        self.host = host
        self.port = port
        self.source = source
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._head = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self) -> None:
        sock = await open_socket(self.host, self.port, self.source)
        self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=1 << 20)

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json") -> tuple[int, bytes]:
        """Send one request and read its whole response."""
        if self._writer is None:
            await self._connect()
        assert self._reader is not None and self._writer is not None
        head = (f"{method} {path} HTTP/1.1\r\n".encode() + self._head +
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        self._writer.write(head + body)
        try:
            return await self._response(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path)

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = -1
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            body = await self._chunks(reader)
        elif length >= 0:
            body = await reader.readexactly(length)
        else:
            body = await reader.read()
            close = True
        if close:
            await self.close()
        return status, body

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


class HttpxPoster:
    """The same `post` through an httpx.AsyncClient with a connection pool (for comparison)."""

    def __init__(self, base_url: str, pool_size: int) -> None:
        import httpx  # only needed for `--client httpx`

        limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self._client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(
            path, content=body, headers={"Content-Type": "application/json"})
        return response.status_code, response.content

    async def close(self) -> None:
        await self._client.aclose()


def random_mac() -> str:
    return secrets.token_hex(6)


def register_body(mac: str, device_type: str = "bench") -> bytes:
    return orjson.dumps({"deviceType": device_type, "mac": mac})


def ezdata_data(status: int, body: bytes) -> Any:
    """The `data` of a successful EzData HTTP reply; anything else raises HttpError."""
    if status != 200:
        raise HttpError(f"HTTP {status}: {body[:200]!r}")
    doc = orjson.loads(body)
    if doc.get("code") != 200:
        raise HttpError(f"EzData error: {body[:200]!r}")
    return doc.get("data")


async def register_devices(host: str, port: int, count: int, sources: Sources,
                           concurrency: int = 32, macs: list[str] | None = None) -> list[str]:
    """Register `count` new devices (random MACs, or `macs`) and return their tokens, in
    order."""
    tokens: list[str] = [""] * count
    next_index = 0

    async def worker(connection: RawConnection) -> None:
        nonlocal next_index
        try:
            while next_index < count:
                index = next_index
                next_index += 1
                mac = macs[index] if macs is not None else random_mac()
                status, body = await connection.post("/api/v2/device/registerMac",
                                                      register_body(mac))
                tokens[index] = ezdata_data(status, body)
        finally:
            await connection.close()

    connections = [RawConnection(host, port, sources.next())
                   for _ in range(min(concurrency, count))]
    await asyncio.gather(*(worker(c) for c in connections))
    return tokens
