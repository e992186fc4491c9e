"""A minimal MQTT 3.1.1 client on an asyncio protocol: CONNECT and SUBSCRIBE go out together,
QoS 0 PUBLISH both ways, PINGREQ, DISCONNECT. One object per connection, no tasks.

As a device (`send`, `recv`, `on_message`) it speaks EzData on `$ezdata/{token}/up` and
`/down`; as a backend (`on_publish(topic, payload)`, `publish`) it sees every topic.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from bench.net import Inbox, open_socket

_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"


class MqttError(Exception):
    """The broker refused the connection or the subscription."""


def _length(value: int) -> bytes:
    """MQTT's variable-length remaining length."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, username: str | None, keepalive: int) -> bytes:
    flags = 0x02 | (0x80 if username is not None else 0)  # clean session, username
    body = _string("MQTT") + bytes((4, flags)) + keepalive.to_bytes(2, "big") + _string(client_id)
    if username is not None:
        body += _string(username)
    return b"\x10" + _length(len(body)) + body


def subscribe_packet(packet_id: int, topic_filter: str) -> bytes:
    body = packet_id.to_bytes(2, "big") + _string(topic_filter) + b"\x00"
    return b"\x82" + _length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH; `topic` already UTF-8."""
    return (b"\x30" + _length(2 + len(topic) + len(payload)) + len(topic).to_bytes(2, "big") +
            topic + payload)


class MqttClient(Inbox, asyncio.Protocol):
    """One MQTT connection; `ready` resolves once CONNACK and SUBACK accepted it."""

    def __init__(self, client_id: str, username: str | None, keepalive: int,
                 subscribe: str, up: str = "") -> None:
        super().__init__()
        self.on_message: Callable[[bytes], None] | None = None
        self.on_publish: Callable[[bytes, bytes], None] | None = None
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._hello = connect_packet(client_id, username, keepalive) + \
            subscribe_packet(1, subscribe)
        up_bytes = up.encode()
        self._up_head = len(up_bytes).to_bytes(2, "big") + up_bytes
        self._buffer = b""
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(self._hello)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(MqttError(f"connection lost: {exc}"))
        self._wake()

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        size = len(data)
        index = 0
        while index + 2 <= size:
            first = data[index]
            length = data[index + 1]
            start = index + 2
            if length & 0x80:  # a longer remaining length: up to three more bytes
                length &= 0x7F
                shift = 7
                while True:
                    if start >= size:
                        self._buffer = data[index:]
                        return
                    byte = data[start]
                    start += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if byte < 0x80:
                        break
            end = start + length
            if end > size:
                break
            kind = first >> 4
            if kind == 3:
                topic_end = start + 2 + ((data[start] << 8) | data[start + 1])
                payload = data[topic_end + (2 if first & 0x06 else 0):end]
                if self.on_publish is not None:
                    self.on_publish(data[start + 2:topic_end], payload)
                elif self.on_message is not None:
                    self.on_message(payload)
                else:
                    self._keep(payload)
            elif kind == 2 and data[start + 1] != 0:
                self._fail(MqttError(f"CONNACK refused: code {data[start + 1]}"))
            elif kind == 9:
                if data[end - 1] == 0x80:
                    self._fail(MqttError("SUBSCRIBE refused"))
                elif not self.ready.done():
                    self.ready.set_result(None)
            index = end
        self._buffer = data[index:] if index < size else b""

    # sending ----------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Publish `payload` to this device's up topic (QoS 0)."""
        if self.transport is None or self.closed:
            raise ConnectionError("MQTT connection is closed")
        head = self._up_head
        self.transport.write(b"\x30" + _length(len(head) + len(payload)) + head + payload)

    def publish(self, topic: bytes, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(publish_packet(topic, payload))

    def ping(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(_PINGREQ)

    def close(self) -> None:
        """DISCONNECT, then close the socket once it is written."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_DISCONNECT)
            self.transport.close()

    # receiving ---------------------------------------------------------------------------------

    def _fail(self, problem: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(problem)
            if self.transport is not None:
                self.transport.close()


async def connect(host: str, port: int, client_id: str, username: str | None, *,
                  subscribe: str, up: str = "", keepalive: int = 60,
                  source: str | None = None, timeout: float = 10.0,
                  tls: ssl.SSLContext | None = None) -> MqttClient:
    """Connect from `source` (over TLS with `tls`), subscribe to `subscribe` (QoS 0) and wait
    until both are accepted."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        sock = await open_socket(host, port, source)
        _, client = await loop.create_connection(
            lambda: MqttClient(client_id, username, keepalive, subscribe, up), sock=sock,
            ssl=tls, server_hostname=host if tls is not None else None)
        await client.ready
    return client


async def connect_device(host: str, port: int, mac: str, token: str, *, keepalive: int = 60,
                         source: str | None = None,
                         tls: ssl.SSLContext | None = None) -> MqttClient:
    """An EzData device: client id `ez{mac}ez`, username = token, its own topics."""
    return await connect(host, port, f"ez{mac}ez", token, subscribe=f"$ezdata/{token}/down",
                         up=f"$ezdata/{token}/up", keepalive=keepalive, source=source, tls=tls)
