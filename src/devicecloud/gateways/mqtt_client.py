"""A lean MQTT 3.1.1 client connection (for talking to an external broker), the asyncio glue of
a client `MqttSession`: connect, subscribe, publish at QoS 0, keepalive pings, and a message
callback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from devicecloud.protocols import mqtt, mqtt_session
from devicecloud.protocols.mqtt_session import MqttSession

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
        loop = asyncio.get_running_loop()
        self.session = MqttSession("client", loop.time(), 16 * 1024 * 1024)
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[int] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._pinger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for event in self.session.receive(data, asyncio.get_running_loop().time()):
            self._handle(event)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        if not self.lost.done():
            self.lost.set_result(None)
        waiting: list[asyncio.Future[Any]] = [self.connected, *self._acks.values()]
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionError("broker connection lost"))

    def _handle(self, event: mqtt_session.Event) -> None:
        if isinstance(event, mqtt.Publish):
            self.on_message(event, partial(self._acknowledge, event) if event.qos else None)
        elif isinstance(event, mqtt_session.Send):
            self._write(event.data)
        elif isinstance(event, mqtt_session.Close):
            log.error("the broker broke the protocol: %s", event.reason)
            self.close()
        elif isinstance(event, mqtt.Connack):
            if not self.connected.done():
                self.connected.set_result(event.return_code)
        elif isinstance(event, mqtt.Suback):
            future = self._acks.pop(event.packet_id, None)
            if future is not None and not future.done():
                if mqtt.SUBACK_FAILURE in event.return_codes:
                    future.set_exception(PermissionError("the broker refused a subscription"))
                else:
                    future.set_result(None)

    def _acknowledge(self, packet: mqtt.Publish) -> None:
        self._write(self.session.acknowledge(packet))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def handshake(self, client_id: str, address: BrokerAddress) -> None:
        """Send CONNECT and wait for an accepting CONNACK."""
        self._write(self.session.connect(mqtt.Connect(
            client_id=client_id, keepalive=self.keepalive, username=address.username,
            password=address.password.encode() if address.password else None)))
        code = await asyncio.wait_for(self.connected, 10)
        if code != 0:
            raise ConnectionRefusedError(f"the broker refused the connection (CONNACK {code})")
        self._arm()

    async def subscribe(self, filters: list[tuple[str, int]]) -> None:
        packet_id, data = self.session.subscribe(filters)
        future = self._acks[packet_id] = asyncio.get_running_loop().create_future()
        self._write(data)
        await asyncio.wait_for(future, 10)

    def publish(self, topic: str, payload: bytes) -> None:
        """Fire and forget (QoS 0): devices take their downlinks at QoS 0."""
        self._write(self.session.publish(topic, payload))

    def close(self) -> None:
        if self.transport is not None:
            self._write(mqtt.encode(mqtt.Disconnect()))
            self.transport.close()

    def _arm(self) -> None:
        due = self.session.next_deadline()
        if due is not None:
            self._pinger = asyncio.get_running_loop().call_at(due, self._ping)

    def _ping(self) -> None:
        for event in self.session.timeout(asyncio.get_running_loop().time()):
            self._handle(event)
        self._arm()
