"""A lean MQTT 3.1.1 client connection (for talking to an external broker), on the project's
codec: connect, subscribe, publish at QoS 0 or 1, keepalive pings, and a message callback."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from devicecloud.protocols import mqtt

log = logging.getLogger(__name__)

OnMessage = Callable[[mqtt.Publish, Callable[[], None] | None], None]


@dataclass(slots=True, frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """`mqtt://user:pass@host:port` (port 1883 if left out)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError("the broker URL must look like mqtt://user:pass@host:port")
        return cls(parts.hostname, parts.port or 1883,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)

    def __repr__(self) -> str:  # never show the password
        return f"BrokerAddress({self.username}@{self.host}:{self.port})"


class MqttClientConnection(asyncio.Protocol):
    """One connection to a broker. `on_message(publish, ack)`: call `ack()` (if not None) once the
    message is handled durably; the broker then forgets it."""

    def __init__(self, on_message: OnMessage, keepalive: int = 30) -> None:
        self.on_message = on_message
        self.keepalive = keepalive
        self.parser = mqtt.Parser(16 * 1024 * 1024, role="client")
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._ids = itertools.cycle(range(1, 65536))
        self._pinger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.parser.feed(data)
        except mqtt.MalformedPacket as problem:
            log.error("broker sent a malformed packet: %s", problem.reason)
            self.close()
            return
        for packet in packets:
            self._handle(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        if not self.lost.done():
            self.lost.set_result(None)
        waiting: list[asyncio.Future[Any]] = [self.connected, *self._acks.values()]
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionError("broker connection lost"))

    def _handle(self, packet: mqtt.Packet) -> None:
        if isinstance(packet, mqtt.Publish):
            ack = None
            if packet.qos == 1 and packet.packet_id is not None:
                ack = self._sender(mqtt.Puback(packet.packet_id))
            elif packet.qos == 2 and packet.packet_id is not None:
                ack = self._sender(mqtt.Pubrec(packet.packet_id))
            self.on_message(packet, ack)
        elif isinstance(packet, mqtt.Pubrel):
            self.send(mqtt.Pubcomp(packet.packet_id))
        elif isinstance(packet, mqtt.Connack):
            if not self.connected.done():
                self.connected.set_result(packet.return_code)
        elif isinstance(packet, mqtt.Puback | mqtt.Suback | mqtt.Unsuback):
            future = self._acks.pop(packet.packet_id, None)
            if future is not None and not future.done():
                failed = isinstance(packet, mqtt.Suback) and mqtt.SUBACK_FAILURE in \
                    packet.return_codes
                if failed:
                    future.set_exception(PermissionError("the broker refused a subscription"))
                else:
                    future.set_result(None)

    def _sender(self, packet: mqtt.Packet) -> Callable[[], None]:
        return lambda: self.send(packet)

    def send(self, packet: mqtt.Packet) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mqtt.encode(packet))

    async def handshake(self, client_id: str, address: BrokerAddress) -> None:
        """Send CONNECT and wait for an accepting CONNACK."""
        self.send(mqtt.Connect(client_id=client_id, keepalive=self.keepalive,
                               username=address.username,
                               password=address.password.encode() if address.password else None))
        code = await asyncio.wait_for(self.connected, 10)
        if code != 0:
            raise ConnectionRefusedError(f"the broker refused the connection (CONNACK {code})")
        self._schedule_ping()

    async def subscribe(self, filters: list[tuple[str, int]]) -> None:
        packet_id = next(self._ids)
        future = self._acks[packet_id] = asyncio.get_running_loop().create_future()
        self.send(mqtt.Subscribe(packet_id, filters))
        await asyncio.wait_for(future, 10)

    def publish(self, topic: str, payload: bytes) -> None:
        """Fire and forget (QoS 0): devices take their downlinks at QoS 0."""
        self.send(mqtt.Publish(topic, payload))

    def close(self) -> None:
        if self.transport is not None:
            self.send(mqtt.Disconnect())
            self.transport.close()

    def _schedule_ping(self) -> None:
        loop = asyncio.get_running_loop()
        self._pinger = loop.call_later(self.keepalive * 0.75, self._ping)

    def _ping(self) -> None:
        self.send(mqtt.Pingreq())
        self._schedule_ping()
