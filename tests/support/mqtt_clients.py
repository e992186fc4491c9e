"""MQTT test clients: a raw one built on the project's codec and session layer (exact bytes,
malformed input) and helpers around paho-mqtt, the client most Python device simulators use."""

from __future__ import annotations

import asyncio
import json
import queue
from typing import Any

import paho.mqtt.client as paho

from devicecloud.protocols import mqtt
from devicecloud.protocols.ezdata_mqtt import down_topic, up_topic
from devicecloud.protocols.mqtt_session import Close, MqttSession, Send
from support.clients import StreamClient


def client_id(mac: str, style: str = "ez") -> str:
    return f"{style}{mac}{style}"


class RawMqtt(StreamClient):
    """A bare MQTT 3.1.1 client over an asyncio stream, on a client `MqttSession`: `recv` gives
    the session's events (it writes the answers the protocol gives by itself), `publish` and
    `device` go through the session, `send` writes exact packets or bytes past it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.session = MqttSession("client", asyncio.get_running_loop().time())
        self.pending: list[mqtt.Packet] = []

    @classmethod
    async def open(cls, port: int) -> RawMqtt:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @classmethod
    async def device(cls, port: int, token: str, mac: str, *, style: str = "ez",
                     keepalive: int = 60, subscribe: bool = True) -> RawMqtt:
        """Connected (and subscribed to its down topic) the way EzData firmware does it."""
        client = await cls.open(port)
        await client.send(client.session.connect(mqtt.Connect(
            client_id=client_id(mac, style), username=token, keepalive=keepalive)))
        connack = await client.recv()
        assert connack == mqtt.Connack(False, 0), connack
        if subscribe:
            packet_id, data = client.session.subscribe([(down_topic(token), 0)])
            await client.send(data)
            assert await client.recv() == mqtt.Suback(packet_id, [0])
        return client

    async def send(self, packet: mqtt.Packet | bytes) -> None:
        self.writer.write(packet if isinstance(packet, bytes) else mqtt.encode(packet))
        await self.writer.drain()

    async def publish(self, token: str, doc: Any, qos: int = 0, packet_id: int | None = None,
                      retain: bool = False) -> None:
        payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        await self.send(self.session.publish(up_topic(token), payload, qos, retain=retain,
                                             packet_id=packet_id))

    async def recv(self, timeout: float = 3.0) -> mqtt.Packet:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed by the server")
            for event in self.session.receive(data, asyncio.get_running_loop().time()):
                if isinstance(event, Send):
                    self.writer.write(event.data)
                elif isinstance(event, Close):
                    raise mqtt.MalformedPacket(event.reason)
                else:
                    self.pending.append(event)
        return self.pending.pop(0)

    async def recv_json(self, timeout: float = 3.0) -> Any:
        packet = await self.recv(timeout)
        assert isinstance(packet, mqtt.Publish), packet
        return json.loads(packet.payload)

    async def assert_pong_next(self, token: str, timeout: float = 5.0) -> None:
        """Send a ping and see its pong arrive first: nothing else was on its way before it (the
        way to show that nothing arrives, without waiting for it)."""
        await self.publish(token, {"deviceToken": token, "body": "ping"})
        assert await self.recv(timeout) == mqtt.Publish(down_topic(token), b"pong")


class PahoDevice:
    """A paho-mqtt client acting as an EzData device; messages land in a queue."""

    def __init__(self, port: int, token: str, mac: str, style: str = "ez") -> None:
        self.token = token
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id(mac, style),
                                  protocol=paho.MQTTv311)
        self.client.username_pw_set(token)
        self.client.on_message = lambda _c, _u, message: self.messages.put(
            json.loads(message.payload) if message.payload[:1] == b"{"
            else {"text": message.payload.decode()})
        subscribed = queue.Queue[object]()
        self.client.on_subscribe = lambda *args: subscribed.put(args)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(f"$ezdata/{token}/down", qos=0)
        subscribed.get(timeout=5)

    def request(self, request_type: int, qos: int = 0, **body: Any) -> dict[str, Any]:
        self.send({"deviceToken": self.token, "body": {**body, "requestType": request_type}}, qos)
        return self.next()

    def send(self, doc: Any, qos: int = 0) -> None:
        payload = doc if isinstance(doc, str) else json.dumps(doc)
        self.client.publish(f"$ezdata/{self.token}/up", payload, qos=qos).wait_for_publish(5)

    def next(self, timeout: float = 3.0) -> dict[str, Any]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
