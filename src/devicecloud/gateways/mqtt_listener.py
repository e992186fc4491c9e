"""The built-in MQTT 3.1.1 listener: devices speak EzData on `$ezdata/{token}/up` and `/down`.

One asyncio Protocol per connection, no task while idle. CONNECT must name a registered token as
username and `ez{mac}ez` or `m5{mac}m5` as client id. A device may subscribe only to its own down
topic and publish only to its own up topic. PUBACK and PUBREC are sent only once the change the
message asked for is committed.

A peer that reads slowly is held back, not buffered for: once its socket is full the connection
stops reading its requests and holds its pushes (coalesced per field) until it drains. One that
leaves more than WRITE_BUFFER_LIMIT unread or reads nothing for STALL_SECONDS is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.events import ConnectionClaimed, Event
from devicecloud.core.ids import PROCESS_ID
from devicecloud.core.models import Device
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.device_session import DeviceSession
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.outbox import Outbox, Payload
from devicecloud.protocols import ezdata, mqtt
from devicecloud.protocols.ezdata_mqtt import client_id_matches, down_topic, up_topic
from devicecloud.protocols.mqtt import ConnackCode

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
KEEPALIVE_GRACE = 1.5
DOWNLINK_LIMIT = 4096
MAX_PACKET_SIZE = 64 * 1024
WRITE_BUFFER_LIMIT = 1024 * 1024
STALL_SECONDS = 30.0
_PINGRESP = mqtt.encode(mqtt.Pingresp())


def _topic_head(topic: str) -> bytes:
    """A topic name as PUBLISH carries it: two length bytes, then UTF-8."""
    data = topic.encode()
    return len(data).to_bytes(2, "big") + data


def _publish_frame(topic_head: bytes, payload: bytes) -> bytes:
    """A QoS 0, not retained PUBLISH (what `mqtt.encode(mqtt.Publish(topic, payload))` gives)."""
    size = len(topic_head) + len(payload)
    return b"\x30" + mqtt.encode_remaining_length(size) + topic_head + payload


async def _nothing_to_flush() -> None:
    """MQTT writes go straight to the transport's buffer."""


class MqttConnection(asyncio.Protocol):
    """One device connection. Its writes are gathered and handed to the transport once per
    event-loop iteration: answers settled together cost one system call, not one each."""

    __slots__ = ("awaiting_release", "backlog", "client_id", "closing", "connecting", "down",
                 "down_head", "keepalive", "last_heard", "listener", "parser", "pending",
                 "session", "stalled", "subscribed", "timer", "transport", "up")

    def __init__(self, listener: MqttListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.parser = mqtt.Parser(MAX_PACKET_SIZE)
        self.session: DeviceSession | None = None
        self.client_id = ""
        self.down = ""
        self.down_head = b""
        self.up = ""
        self.pending: list[bytes] | None = None
        self.subscribed = False
        self.connecting = False
        self.backlog: list[mqtt.Packet] | None = None
        self.awaiting_release: dict[int, bool] | None = None
        self.keepalive = 0.0
        self.last_heard = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.stalled: asyncio.TimerHandle | None = None  # set while the socket is full
        self.closing = False

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.listener.connections.add(self)
        loop = asyncio.get_running_loop()
        self.last_heard = loop.time()
        self.timer = loop.call_later(CONNECT_TIMEOUT, self._connect_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_heard = asyncio.get_running_loop().time()
        try:
            packets = self.parser.feed(data)
        except mqtt.MalformedPacket as problem:
            for packet in problem.preceding:
                self._handle(packet)
            if problem.connack_code is not None and self.session is None:
                self._write(mqtt.encode(mqtt.Connack(False, problem.connack_code)))
            self.close(f"malformed packet: {problem.reason}")
            return
        for packet in packets:
            if self.closing:
                return
            self._handle(packet)

    def pause_writing(self) -> None:
        if self.closing or self.transport is None:
            return
        self.transport.pause_reading()
        if self.session is not None:
            self.session.outbox.hold()
        self.stalled = asyncio.get_running_loop().call_later(STALL_SECONDS, self._stall_timeout)

    def resume_writing(self) -> None:
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None
        if self.closing or self.transport is None:
            return
        self.transport.resume_reading()
        if self.session is not None:
            self.session.outbox.release()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.stalled is not None:
            self.stalled.cancel()
        if self.timer is not None:
            self.timer.cancel()
        self.listener.forget(self)
        if self.session is not None:
            task = asyncio.ensure_future(self.session.close())
            self.listener.closing.add(task)
            task.add_done_callback(self.listener.closing.discard)

    # packets -------------------------------------------------------------------------------

    def _handle(self, packet: mqtt.Packet) -> None:
        if self.session is None:
            if self.connecting:
                if self.backlog is None:
                    self.backlog = []
                self.backlog.append(packet)
            elif isinstance(packet, mqtt.Connect):
                self.connecting = True
                task = asyncio.ensure_future(self._connect(packet))
                self.listener.closing.add(task)
                task.add_done_callback(self.listener.closing.discard)
            else:
                self.close("first packet must be CONNECT")
            return
        if isinstance(packet, mqtt.Publish):
            self._publish(packet)
        elif isinstance(packet, mqtt.Pingreq):
            self._write(_PINGRESP)
        elif isinstance(packet, mqtt.Subscribe):
            self._subscribe(packet)
        elif isinstance(packet, mqtt.Pubrel):
            if self.awaiting_release is not None:
                self.awaiting_release.pop(packet.packet_id, None)
            self._write(mqtt.encode(mqtt.Pubcomp(packet.packet_id)))
        elif isinstance(packet, mqtt.Unsubscribe):
            if self.down in packet.topic_filters:
                self.subscribed = False
            self._write(mqtt.encode(mqtt.Unsuback(packet.packet_id)))
        elif isinstance(packet, mqtt.Disconnect):
            self.close("client disconnected", polite=True)
        elif isinstance(packet, mqtt.Puback | mqtt.Pubrec | mqtt.Pubcomp):
            pass  # downlinks are QoS 0; stray acknowledgements are harmless
        else:
            self.close(f"unexpected {type(packet).__name__.upper()}")

    async def _connect(self, packet: mqtt.Connect) -> None:
        code, device = await self._check(packet)
        if self.closing:
            return
        if device is None:
            self._write(mqtt.encode(mqtt.Connack(False, code)))
            self.close(f"CONNECT refused ({code})")
            return
        self.client_id = packet.client_id
        self.down = down_topic(device.token)
        self.down_head = _topic_head(self.down)
        self.up = up_topic(device.token)
        self.listener.take_over(self, device.token)
        self._write(mqtt.encode(mqtt.Connack(False, ConnackCode.ACCEPTED)))
        session = DeviceSession(self.listener.cloud, self.listener.hub,
                                Outbox(self._downlink, None), "mqtt", _nothing_to_flush,
                                value_on_top=True)
        session.attach(device)
        if self.stalled is not None:
            session.outbox.hold()
        self.session = session
        self.keepalive = packet.keepalive * KEEPALIVE_GRACE
        self._arm_keepalive()
        backlog, self.backlog = self.backlog or [], None
        for queued in backlog:
            if not self.closing:
                self._handle(queued)
        await self.listener.cloud.limit_downlinks(device, DOWNLINK_LIMIT)
        await self.listener.cloud.touch(device)

    async def _check(self, packet: mqtt.Connect) -> tuple[int, Device | None]:
        if packet.password:
            return ConnackCode.BAD_USERNAME_OR_PASSWORD, None
        if not packet.username:
            return ConnackCode.BAD_USERNAME_OR_PASSWORD, None
        try:
            device = await self.listener.cloud.authenticate(packet.username)
        except DeviceCloudError:
            return ConnackCode.NOT_AUTHORIZED, None
        if not client_id_matches(packet.client_id, device.mac):
            return ConnackCode.IDENTIFIER_REJECTED, None
        return ConnackCode.ACCEPTED, device

    def _subscribe(self, packet: mqtt.Subscribe) -> None:
        codes = []
        for topic_filter, _qos in packet.subscriptions:
            if topic_filter == self.down:
                self.subscribed = True
                codes.append(0)
            else:
                codes.append(mqtt.SUBACK_FAILURE)
        self._write(mqtt.encode(mqtt.Suback(packet.packet_id, codes)))

    def _publish(self, packet: mqtt.Publish) -> None:
        session = self.session
        assert session is not None
        if packet.topic != self.up:
            self.close(f"publish to a foreign topic {packet.topic[:80]!r}")
            return
        pid = packet.packet_id
        before: Callable[[], None] | None = None
        if packet.qos == 1:
            before = self._acknowledge(mqtt.Puback(pid or 0))
        elif packet.qos == 2:
            assert pid is not None
            if self.awaiting_release is None:
                self.awaiting_release = {}
            if pid in self.awaiting_release:  # a resent QoS 2 message is carried out once
                if self.awaiting_release[pid]:
                    self._write(mqtt.encode(mqtt.Pubrec(pid)))
                return
            self.awaiting_release[pid] = False
            before = self._acknowledge(mqtt.Pubrec(pid))
        session.receive(packet.payload, before)

    def _acknowledge(self, ack: mqtt.Puback | mqtt.Pubrec) -> Callable[[], None]:
        def send() -> None:
            waiting = self.awaiting_release
            if isinstance(ack, mqtt.Pubrec) and waiting and ack.packet_id in waiting:
                waiting[ack.packet_id] = True
            self._write(mqtt.encode(ack))
        return send

    # output --------------------------------------------------------------------------------

    def _downlink(self, payload: Payload) -> None:
        if not self.subscribed:
            return
        data = payload.encode() if isinstance(payload, str) else payload
        frame = _publish_frame(self.down_head, data)
        if len(frame) > DOWNLINK_LIMIT:
            frame = _publish_frame(self.down_head, ezdata.error(
                f"message larger than the {DOWNLINK_LIMIT}-byte MQTT downlink limit"))
        self._write(frame)

    def _write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.pending is None:
            self.pending = [data]
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self.pending.append(data)

    def _flush(self) -> None:
        pending, self.pending = self.pending, None
        transport = self.transport
        if pending and transport is not None and not transport.is_closing():
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            if self.stalled is not None and transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                self.close(f"{transport.get_write_buffer_size()} bytes unread")

    def close(self, reason: str, polite: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        (log.debug if polite else log.info)("MQTT %s closed: %s", self.client_id or "-", reason)
        if self.transport is not None:
            self._flush()
            if self.stalled is None:
                self.transport.close()
            else:  # what it has not read would never leave
                self.transport.abort()

    # timers --------------------------------------------------------------------------------

    def _stall_timeout(self) -> None:
        self.close(f"nothing read for {STALL_SECONDS:g} s")

    def _connect_timeout(self) -> None:
        self.timer = None
        if self.session is None:
            self.close("no CONNECT within 10 s")

    def _arm_keepalive(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.keepalive > 0:
            loop = asyncio.get_running_loop()
            due = self.last_heard + self.keepalive
            self.timer = loop.call_at(due, self._keepalive_due)

    def _keepalive_due(self) -> None:
        self.timer = None
        if asyncio.get_running_loop().time() - self.last_heard >= self.keepalive:
            self.close("keepalive expired")
        else:
            self._arm_keepalive()


CLAIM = "mqtt:"


def _holder(connection: MqttConnection) -> str:
    return f"{PROCESS_ID}:{id(connection):x}"


class MqttListener:
    """Accepts device connections on one TCP port."""

    def __init__(self, cloud: DeviceCloud, hub: Hub, host: str, port: int,
                 reuse_port: bool = False) -> None:
        self.cloud = cloud
        self.reuse_port = reuse_port
        self.hub = hub
        self.host = host
        self.port = port
        self.connections: set[MqttConnection] = set()
        self.closing: set[asyncio.Future[None]] = set()
        self._by_client_id: dict[str, MqttConnection] = {}
        self._unsubscribe = cloud.bus.subscribe(self._claimed)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: MqttConnection(self), self.host,
                                                self.port, backlog=4096, reuse_address=True,
                                                reuse_port=self.reuse_port or None)
        log.info("MQTT listener on %s:%d", self.host, self.port)

    async def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Stop accepting, close every connection, and let their sessions finish."""
        self._unsubscribe()
        await self.stop_accepting()
        for connection in tuple(self.connections):
            connection.close("server stopping", polite=True)
        await asyncio.sleep(0)
        if self.closing:
            await asyncio.gather(*self.closing, return_exceptions=True)

    def take_over(self, connection: MqttConnection, token: str) -> None:
        """Register the connection's client id; an older connection with the same id, here or
        in any other process, is closed."""
        key = connection.client_id.lower()
        older = self._by_client_id.get(key)
        self._by_client_id[key] = connection
        if older is not None and older is not connection:
            older.close("taken over by a new connection with the same client id")
        self.cloud.bus.publish(ConnectionClaimed(token, CLAIM + key, _holder(connection)))

    def _claimed(self, event: Event) -> None:
        """Another process took a client id held here: close ours."""
        if not isinstance(event, ConnectionClaimed) or not event.claim.startswith(CLAIM):
            return
        held = self._by_client_id.get(event.claim[len(CLAIM):])
        if held is not None and _holder(held) != event.holder:
            held.close("taken over by a new connection with the same client id elsewhere")

    def forget(self, connection: MqttConnection) -> None:
        self.connections.discard(connection)
        key = connection.client_id.lower()
        if self._by_client_id.get(key) is connection:
            del self._by_client_id[key]
