"""External broker mode: devices connect to a real broker (Mosquitto, EMQX, HiveMQ); devicecloud
is a client of it. It takes up messages from the shared subscription
`$share/devicecloud/$ezdata/+/up` (so several instances split the load and each message is
handled once), answers and pushes on `$ezdata/{token}/down`, and follows presence from the
broker's own `$SYS` announcements where the broker makes them. A broker that cannot share the
subscription gets a plain one, and the instances split the devices (`partition`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.events import DeviceBound, DeviceUpdated, Event, FieldChanged
from devicecloud.core.ids import is_token
from devicecloud.core.ports import Bus
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.device_session import DeviceSession
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.mqtt_client import BrokerAddress, MqttClientConnection
from devicecloud.gateways.outbox import Outbox, Payload
from devicecloud.gateways.partition import Partition, StaticPartition
from devicecloud.protocols import broker_events, ezdata, mqtt
from devicecloud.protocols.ezdata_mqtt import DOWNLINK_LIMIT, UP_FILTER, down_topic, up_token

log = logging.getLogger(__name__)

SHARED_UP = f"$share/devicecloud/{UP_FILTER}"
PROBE_SECONDS = 2.0
RETRY_DELAYS = (0.5, 1, 2, 5)
PUSHED = (FieldChanged, DeviceBound, DeviceUpdated)  # what the sessions act on


async def _nothing_to_flush() -> None:
    """Publishes go straight to the broker connection's buffer."""


class BrokerClient:
    """A device's connection to the broker: it counts for presence only (the bridge's sessions
    answer and push for every device, whoever holds it)."""

    transport = "mqtt"

    def deliver(self, event: Event) -> None:
        """Never routed: see `MqttBridge._on_event`."""

    async def drain(self) -> None:
        """Nothing is pending here: answers are published by the bridge's sessions."""


class MqttBridge:
    """Keeps one connection to the broker, reconnecting whenever it is lost."""

    def __init__(self, cloud: DeviceCloud, hub: Hub, bus: Bus, url: str,
                 partition: Partition | None = None) -> None:
        self.cloud = cloud
        self.hub = hub
        self.address = BrokerAddress.parse(url)
        self.client_id = f"devicecloud-{socket.gethostname()}-{os.getpid()}"[:64]
        self.connection: MqttClientConnection | None = None
        self.sessions: dict[str, DeviceSession] = {}
        self.clients: dict[str, tuple[str, BrokerClient]] = {}
        self.connected = asyncio.Event()
        self.partition = partition or StaticPartition(0, 1)
        self.shared = True
        self._probe_topic = f"$ezdata/{self.client_id}-probe/up"
        self._probed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._waiting: dict[str, list[tuple[bytes, Callable[[], None] | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Any instance can publish to any device through the broker: each push is sent by the
        # instance where its change was made.
        self._unsubscribe = bus.subscribe(self._on_event, own_only=True)

    async def start(self, wait: float = 10.0) -> None:
        """Start connecting; wait up to `wait` seconds for the first connection."""
        await self.partition.start()
        self._runner = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self.connected.wait(), wait)
        except TimeoutError:
            log.error("broker %s not reachable yet; retrying in the background", self.address)

    async def stop_accepting(self) -> None:
        """Answer every up message already taken (the broker keeps the rest for others)."""
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.pause_reading()
        await asyncio.gather(*(s.drain() for s in self.sessions.values()),
                             return_exceptions=True)

    async def stop(self) -> None:
        self._unsubscribe()
        if self._runner is not None:
            self._runner.cancel()
        if self.sessions:
            await asyncio.gather(*(s.close() for s in self.sessions.values()),
                                 return_exceptions=True)
        if self.connection is not None:
            self.connection.close()
        await self.partition.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._connect_once()
                failures = 0
                log.warning("broker connection lost; reconnecting")
            except (OSError, ConnectionError, TimeoutError) as problem:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("broker %s: %s; retrying in %s s", self.address, problem, delay)
                await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: MqttClientConnection(self._on_message), self.address.host, self.address.port)
        try:
            await connection.handshake(self.client_id, self.address)
            await connection.subscribe([(SHARED_UP, 1)])
            self.shared = await self._shared_delivery_works(connection)
            if not self.shared:
                await connection.subscribe([(UP_FILTER, 1)])
                log.warning("the broker does not deliver $share subscriptions of $ezdata topics "
                            "(Mosquitto 2.0 does not): the instances split the devices "
                            "(%s)", type(self.partition).__name__)
            try:
                await connection.subscribe([(topic, 0) for topic in broker_events.SUBSCRIPTIONS])
            except PermissionError:
                log.info("broker does not announce clients; presence follows traffic only")
            self.connection = connection
            self.connected.set()
            log.info("connected to broker %s", self.address)
            await connection.lost
        finally:
            self.connected.clear()
            self.connection = None
            connection.close()

    async def _shared_delivery_works(self, connection: MqttClientConnection) -> bool:
        """Publish a probe on an up topic and see whether the shared subscription delivers it."""
        self._probed.clear()
        connection.publish(self._probe_topic, b"probe")
        try:
            await asyncio.wait_for(self._probed.wait(), PROBE_SECONDS)
        except TimeoutError:
            return False
        return True

    def _mine(self, token: str) -> bool:
        """Without shared subscriptions every instance sees every message: each handles its
        partition of the tokens."""
        return self.shared or self.partition.owns(token)

    # up messages -----------------------------------------------------------------------------

    def _on_message(self, publish: mqtt.Publish, ack: Callable[[], None] | None) -> None:
        token = up_token(publish.topic)
        if publish.topic == self._probe_topic:
            self._probed.set()
        elif token is not None:
            if is_token(token) and self._mine(token):
                self._up(token, publish.payload, ack)
            elif ack is not None:
                ack()
            return
        if ack is not None:
            ack()
        event = broker_events.parse(publish.topic, publish.payload)
        if event is not None:
            self._presence(event)

    def _up(self, token: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        if token in self._waiting:  # its session is being opened: keep the order
            self._waiting[token].append((payload, ack))
            return
        session = self.sessions.get(token)
        if session is not None:
            session.receive(payload, ack)
        else:
            self._waiting[token] = [(payload, ack)]
            self._spawn(self._open(token))

    async def _open(self, token: str) -> None:
        session = await self._session(token)
        for payload, ack in self._waiting.pop(token, []):
            if session is not None:
                session.receive(payload, ack)
                continue
            if ack is not None:
                ack()
            self._publish(token, ezdata.error("unknown deviceToken"))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, token: str) -> DeviceSession | None:
        """The session answering for `token`, created on its first message or push."""
        if token in self.sessions:
            return self.sessions[token]
        try:
            device = await self.cloud.authenticate(token)
        except DeviceCloudError:
            return None
        if token in self.sessions:  # created meanwhile
            return self.sessions[token]
        session = DeviceSession(self.cloud, self.hub,
                                Outbox(lambda data: self._publish(token, data), None), "mqtt",
                                _nothing_to_flush, value_on_top=True)
        session.device = device
        self.sessions[token] = session
        await self.cloud.limit_downlinks(device, DOWNLINK_LIMIT)
        return session

    def _publish(self, token: str, data: Payload) -> None:
        if self.connection is not None:
            self.connection.publish(down_topic(token),
                                    data.encode() if isinstance(data, str) else data)

    # pushes and presence ---------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, PUSHED):
            return
        session = self.sessions.get(event.device_token)
        if session is None:
            self._spawn(self._deliver_later(event))
        else:
            session.deliver(event)

    async def _deliver_later(self, event: Event) -> None:
        session = await self._session(event.device_token)
        if session is not None:
            session.deliver(event)

    def _presence(self, event: broker_events.ClientEvent) -> None:
        if event.client_id == self.client_id:
            return
        if event.online and event.username:
            previous = self.clients.pop(event.client_id, None)
            if previous is not None:
                self.hub.leave(previous[0], previous[1])
            client = BrokerClient()
            self.clients[event.client_id] = (event.username, client)
            self.hub.join(event.username, client, routed=False)
        elif not event.online and event.client_id in self.clients:
            token, client = self.clients.pop(event.client_id)
            self.hub.leave(token, client)
