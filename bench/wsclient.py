"""A minimal WebSocket client (RFC 6455) on an asyncio protocol: masked text frames out,
unfragmented or fragmented frames in, pings answered. One object per connection, no tasks.

Received messages go, as raw bytes, to `on_message` when it is set (the hot path: a plain
callback), otherwise they are queued for `await recv()` (setup steps and low-rate scenarios).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import struct
from collections.abc import Callable
from typing import cast

from bench.net import Inbox, open_socket

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeError(Exception):
    """The server did not upgrade the connection."""


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `key` (one big-integer XOR, no Python loop)."""
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * ((n + 3) // 4))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    key = random.getrandbits(32).to_bytes(4, "little")
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + mask(payload, key)


class WsClient(Inbox, asyncio.Protocol):
    """One client WebSocket connection."""

    def __init__(self, host: str, path: str) -> None:
        super().__init__()
        self.on_message: Callable[[bytes], None] | None = None
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._host = host
        self._path = path
        self._key = base64.b64encode(os.urandom(16))
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self._path.encode(), self._host.encode(), self._key))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded and not self._read_handshake():
            return
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(f"connection lost: {exc}"))
        self._wake()

    # sending ----------------------------------------------------------------------------------

    def send(self, text: str | bytes) -> None:
        """Queue one text frame (never blocks; the transport buffers)."""
        if self.transport is None or self.closed:
            raise ConnectionError("WebSocket is closed")
        payload = text.encode() if isinstance(text, str) else text
        self.transport.write(frame(_OP_TEXT, payload))

    def close(self) -> None:
        """Send a normal close frame and close the socket once it is written."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(_OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()

    # receiving ---------------------------------------------------------------------------------

    def _deliver(self, payload: bytes) -> None:
        if self.on_message is not None:
            self.on_message(payload)
        else:
            self._keep(payload)

    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[:end + 4]
        lines = head.split("\r\n")
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        if not lines[0].startswith("HTTP/1.1 101") or \
                headers.get("sec-websocket-accept") != expected:
            if not self.handshake.done():
                self.handshake.set_exception(HandshakeError(lines[0]))
            assert self.transport is not None
            self.transport.close()
            return False
        self._upgraded = True
        self.handshake.set_result(None)
        return True

    def _read_frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            b0, b1 = buffer[0], buffer[1]
            length = b1 & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                start = 10
            if b1 & 0x80:
                raise ValueError("the server sent a masked frame")
            end = start + length
            if len(buffer) < end:
                return
            payload = bytes(buffer[start:end])
            del buffer[:end]
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)

    def _frame(self, final: bool, opcode: int, payload: bytes) -> None:
        if opcode in (_OP_TEXT, _OP_BINARY, _OP_CONTINUATION):
            if not final:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            self._deliver(payload)
        elif opcode == _OP_PING and self.transport is not None:
            self.transport.write(frame(_OP_PONG, payload))
        elif opcode == _OP_CLOSE and self.transport is not None:
            self.closed = True
            self.transport.close()


async def connect(host: str, port: int, path: str = "/ws", source: str | None = None,
                  timeout: float = 10.0) -> WsClient:
    """Open a WebSocket to ws://host:port/path from the source address `source`."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        sock = await open_socket(host, port, source)
        _, client = await loop.create_connection(lambda: WsClient(f"{host}:{port}", path),
                                                 sock=sock)
        await client.handshake
    return client
