"""The built-in MQTT 3.1.1 listener: devices speak EzData on `$ezdata/{token}/up` and `/down`.

One asyncio Protocol per connection, no task while idle, on a sans-I/O `MqttSession` (the MQTT
rules). CONNECT must name a registered token as username and `ez{mac}ez` or `m5{mac}m5` as client
id. A device may subscribe only to its own down topic and publish only to its own up topic
(`DeviceAcl`). PUBACK and PUBREC are sent only once the change the message asked for is committed,
or with the refusal answered on the down topic (a request over `device.messages`: answered, never
dropped). A CONNECT over `ip.connects` or `ip.connections` gets CONNACK 3, then a close.

A peer that reads slowly is held back, not buffered for: once its socket is full the connection
stops reading its requests and holds its pushes (coalesced per field) until it drains. One that
leaves more than WRITE_BUFFER_LIMIT unread or reads nothing for STALL_SECONDS is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import cast

from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.events import ConnectionClaimed, Event
from devicecloud.core.ids import PROCESS_ID
from devicecloud.core.models import Device
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.device_session import DeviceSession
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.outbox import Outbox, Payload
from devicecloud.gateways.tls_handshake import TlsServer, bound_socket
from devicecloud.limits import source_address
from devicecloud.protocols import ezdata, mqtt, mqtt_session
from devicecloud.protocols.ezdata_mqtt import (
    DOWNLINK_LIMIT,
    DeviceAcl,
    client_id_matches,
    down_topic,
)
from devicecloud.protocols.mqtt import ConnackCode
from devicecloud.protocols.mqtt_session import MqttSession

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
KEEPALIVE_GRACE = 1.5
MAX_PACKET_SIZE = 64 * 1024
WRITE_BUFFER_LIMIT = 1024 * 1024
STALL_SECONDS = 30.0
_NO_ACL = DeviceAcl("", "")  # before the CONNECT is accepted: nothing is allowed


async def _nothing_to_flush() -> None:
    """MQTT writes go straight to the transport's buffer."""


class MqttConnection(asyncio.Protocol):
    """One device connection: bytes to its `MqttSession`, the session's events to the device's
    `DeviceSession`, timers at the session's deadlines. Its writes are gathered and handed to
    the transport once per event-loop iteration: answers settled together cost one system call,
    not one each."""

    __slots__ = ("acl", "address", "client_id", "closing", "counted", "down_head", "listener",
                 "mqtt", "pending", "session", "stalled", "subscribed", "timer", "transport")

    def __init__(self, listener: MqttListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.mqtt = MqttSession("server", asyncio.get_running_loop().time(), MAX_PACKET_SIZE,
                                connect_timeout=CONNECT_TIMEOUT, keepalive_grace=KEEPALIVE_GRACE)
        self.session: DeviceSession | None = None
        self.client_id = ""
        self.acl = _NO_ACL
        self.down_head = b""
        self.pending: list[bytes] | None = None
        self.subscribed = False
        self.timer: asyncio.TimerHandle | None = None
        self.stalled: asyncio.TimerHandle | None = None  # set while the socket is full
        self.closing = False
        self.address = ""  # the peer's, as the limits count it
        self.counted = False  # under ip.connections

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.address = source_address(peer[0] if isinstance(peer, tuple) else "")
        self.listener.connections.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self.closing:
            self._act(self.mqtt.receive(data, asyncio.get_running_loop().time()))

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
        if self.counted:
            self.counted = False
            self._finish(self.listener.hub.limits.ip_connections.close(self.address))
        if self.session is not None:
            self._finish(self.session.close())

    def _finish(self, work: Awaitable[None] | None) -> None:
        """Let `work` finish after the connection, before the listener stops."""
        if work is not None:
            task = asyncio.ensure_future(work)
            self.listener.closing.add(task)
            task.add_done_callback(self.listener.closing.discard)

    # events --------------------------------------------------------------------------------

    def _act(self, events: Sequence[mqtt_session.Event]) -> None:
        for event in events:
            if self.closing:
                return
            if type(event) is mqtt.Publish:
                self._publish(event)
            else:
                self._handle(event)

    def _handle(self, event: mqtt_session.Event) -> None:
        if isinstance(event, mqtt_session.Send):
            self._write(event.data)
        elif isinstance(event, mqtt_session.Close):
            self.close(event.reason)
        elif isinstance(event, mqtt.Subscribe):
            self._subscribe(event)
        elif isinstance(event, mqtt.Unsubscribe):
            if any(map(self.acl.may_subscribe, event.topic_filters)):
                self.subscribed = False
            self._write(mqtt.encode(mqtt.Unsuback(event.packet_id)))
        elif isinstance(event, mqtt.Connect):
            self._finish(self._connect(event))
        elif isinstance(event, mqtt.Disconnect):
            self.close("client disconnected", polite=True)
        # what remains is stray acknowledgements (downlinks are QoS 0): harmless

    async def _connect(self, packet: mqtt.Connect) -> None:
        refused = await self._admit()
        if refused is not None:
            if not self.closing:
                self._write(self.mqtt.refuse(ConnackCode.SERVER_UNAVAILABLE))
                self.close(f"CONNACK 3: {refused}")
            return
        code, device = await self._check(packet)
        if self.closing:
            return
        if device is None:
            self._write(self.mqtt.refuse(code))
            self.close(f"CONNECT refused ({code})")
            return
        self.client_id = packet.client_id
        self.acl = DeviceAcl.of(device.token)
        self.down_head = mqtt.publish_topic(down_topic(device.token))
        self.listener.take_over(self, device.token)
        connack, held = self.mqtt.accept()
        self._write(connack)
        session = DeviceSession(self.listener.cloud, self.listener.hub,
                                Outbox(self._downlink, None), "mqtt", _nothing_to_flush,
                                value_on_top=True)
        session.attach(device)
        if self.stalled is not None:
            session.outbox.hold()
        self.session = session
        self._arm()
        self._act(held)
        await self.listener.cloud.limit_downlinks(device, DOWNLINK_LIMIT)
        await self.listener.cloud.touch(device)

    async def _admit(self) -> str | None:
        """Count this connection under `ip.connects` and `ip.connections`; the refusal if either
        is over (the connection is then not counted)."""
        limits = self.listener.hub.limits
        verdict = limits.admit_now(self.address)
        if verdict is None:
            verdict = await limits.admit(self.address)
        if not verdict:
            self.counted = True
            if self.closing:  # gone meanwhile: uncount it at once
                self.counted = False
                self._finish(limits.ip_connections.close(self.address))
            return None
        return limits.connect_refusal(verdict)[0]

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
            if self.acl.may_subscribe(topic_filter):
                self.subscribed = True
                codes.append(0)
            else:
                codes.append(mqtt.SUBACK_FAILURE)
        self._write(mqtt.encode(mqtt.Suback(packet.packet_id, codes)))

    def _publish(self, packet: mqtt.Publish) -> None:
        session = self.session
        assert session is not None
        if not self.acl.may_publish(packet.topic):
            self.close(f"publish to a foreign topic {packet.topic[:80]!r}")
            return
        before: Callable[[], None] | None = None
        if packet.qos:
            before = partial(self._acknowledge, packet)
        session.receive(packet.payload, before)

    def _acknowledge(self, packet: mqtt.Publish) -> None:
        self._write(self.mqtt.acknowledge(packet))

    # output --------------------------------------------------------------------------------

    def _downlink(self, payload: Payload) -> None:
        if not self.subscribed:
            return
        data = payload.encode() if isinstance(payload, str) else payload
        frame = mqtt.publish_frame(self.down_head, data)
        if len(frame) > DOWNLINK_LIMIT:
            frame = mqtt.publish_frame(self.down_head, ezdata.error(
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

    def _arm(self) -> None:
        """Wake up at the session's next deadline (the CONNECT's, then the keepalive's)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        due = self.mqtt.next_deadline()
        if due is not None:
            self.timer = asyncio.get_running_loop().call_at(due, self._deadline)

    def _deadline(self) -> None:
        self.timer = None
        self._act(self.mqtt.timeout(asyncio.get_running_loop().time()))
        if not self.closing:
            self._arm()


CLAIM = "mqtt:"


def _holder(connection: MqttConnection) -> str:
    return f"{PROCESS_ID}:{id(connection):x}"


class MqttListener:
    """Accepts device connections on one TCP port."""

    def __init__(self, cloud: DeviceCloud, hub: Hub, host: str, port: int,
                 reuse_port: bool = False, tls: ssl.SSLContext | None = None,
                 tls_port: int = 0) -> None:
        self.cloud = cloud
        self.tls = tls
        self.tls_port = tls_port
        self.reuse_port = reuse_port
        self.hub = hub
        self.host = host
        self.port = port
        self.connections: set[MqttConnection] = set()
        self.closing: set[asyncio.Future[None]] = set()
        self._by_client_id: dict[str, MqttConnection] = {}
        self._unsubscribe = cloud.bus.subscribe(self._claimed)
        self._server: asyncio.Server | None = None
        self._tls_server: TlsServer | None = None

    async def start(self) -> None:
        """Listen on `port` (0: not at all)."""
        if not self.port:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: MqttConnection(self), self.host,
                                                self.port, backlog=4096, reuse_address=True,
                                                reuse_port=self.reuse_port or None)
        log.info("MQTT listener on %s:%d", self.host, self.port)

    async def start_tls(self) -> None:
        """Listen for MQTT over TLS on `tls_port` with the `tls` context, if both are given."""
        if self.tls is None or not self.tls_port:
            return
        sock = bound_socket(self.host, self.tls_port, self.reuse_port)
        self._tls_server = TlsServer(sock, self.tls, lambda: MqttConnection(self),
                                     f"MQTT over TLS on port {self.tls_port}", CONNECT_TIMEOUT)
        log.info("MQTT over TLS listener on %s:%d", self.host, self.tls_port)

    async def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._tls_server is not None:
            self._tls_server.close()

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
