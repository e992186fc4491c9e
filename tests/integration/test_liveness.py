"""Order and liveness of live connections under load: requests are applied in the order they
arrive, slow readers resume or are closed, and no peer can make the server's memory grow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.clients import StreamClient, WsDevice
from support.mqtt_clients import RawMqtt
from support.server import Server, random_mac
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from bench.stats import rss_bytes
from devicecloud.protocols import mqtt

PIPELINED = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: its tests register hundreds of devices from one address."""
    instance = Server(tmp_path_factory.mktemp("liveness") / "data",
                      env={"DEVICECLOUD_LIMIT": "ip.register=10000/s:10000"}).start()
    yield instance
    assert instance.stop() == 0, instance.log()


def _modify(token: str, value: int) -> str:
    return json.dumps({"deviceToken": token,
                       "body": {"requestType": 101, "name": "n", "value": value}})


async def _field_with_history(server: Server, http: httpx.AsyncClient,
                              token: str) -> tuple[Any, list[Any]]:
    api = f"{server.url}/api/v2/{token}"
    value = (await http.get(f"{api}/dataByKey/n")).json()["data"]["value"]
    rows = (await http.get(f"{api}/historyByKey/n", params={"pageSize": 100})).json()
    return value, [row["value"] for row in reversed(rows["data"]["rows"])]


async def _assert_applied_in_order(server: Server, http: httpx.AsyncClient,
                                   tokens: list[str]) -> None:
    expected = (PIPELINED, list(range(PIPELINED + 1)))
    stored = [await _field_with_history(server, http, token) for token in tokens]
    wrong = [found for found in stored if found != expected]
    assert not wrong, f"{len(wrong)} of {len(tokens)} devices out of order, e.g. {wrong[0]}"


async def _new_field(server: Server, http: httpx.AsyncClient) -> str:
    token = server.register()
    reply = await http.post(f"{server.url}/api/v2/{token}/add",
                            json={"name": "n", "value": 0, "dataType": "number"})
    assert reply.json()["code"] == 200
    return token


async def _pipeline_over_websocket(server: Server, token: str, gap: float) -> list[Any]:
    """Login and 16 modifies sent a moment apart, without waiting for any answer (so some
    arrive while the login is still being carried out); returns the 17 answers."""
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"deviceToken": token}))
        for value in range(1, PIPELINED + 1):
            await asyncio.sleep(gap)
            await ws.send(_modify(token, value))
        return [await asyncio.wait_for(ws.recv(), 10) for _ in range(PIPELINED + 1)]


async def test_requests_pipelined_after_a_websocket_login_apply_in_order(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        tokens = [await _new_field(server, http) for _ in range(200)]
        answers = await asyncio.gather(*(_pipeline_over_websocket(server, t, i % 4 / 1000)
                                         for i, t in enumerate(tokens)))
        for replies in answers:
            assert replies[0] == "device Login successful"
            assert [json.loads(reply)["body"]["value"] for reply in replies[1:]] == list(
                range(1, PIPELINED + 1))
        await _assert_applied_in_order(server, http, tokens)


async def _pipeline_over_mqtt(server: Server, token: str, mac: str) -> list[Any]:
    """CONNECT, SUBSCRIBE, an EzData login and 16 modifies in one write; returns the answers."""
    client = await RawMqtt.open(server.mqtt_port)
    packets: list[mqtt.Packet] = [
        mqtt.Connect(client_id=f"ez{mac}ez", username=token, keepalive=60),
        mqtt.Subscribe(1, [(f"$ezdata/{token}/down", 0)]),
        mqtt.Publish(f"$ezdata/{token}/up", json.dumps({"deviceToken": token}).encode(), 0)]
    packets += [mqtt.Publish(f"$ezdata/{token}/up", _modify(token, value).encode(), 1,
                             packet_id=value) for value in range(1, PIPELINED + 1)]
    await client.send(b"".join(mqtt.encode(packet) for packet in packets))
    replies: list[Any] = []
    while len(replies) < PIPELINED + 1:
        packet = await client.recv(10)
        if isinstance(packet, mqtt.Publish):
            text = packet.payload.decode()
            replies.append(text if text[:1] != "{" else json.loads(text))
    await client.close()
    return replies


async def test_requests_pipelined_over_mqtt_apply_in_order(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        macs = [random_mac() for _ in range(60)]
        tokens = []
        for mac in macs:
            token = server.register(mac)
            await http.post(f"{server.url}/api/v2/{token}/add",
                            json={"name": "n", "value": 0, "dataType": "number"})
            tokens.append(token)
        answers = await asyncio.gather(*(_pipeline_over_mqtt(server, token, mac)
                                         for token, mac in zip(tokens, macs, strict=True)))
        for replies in answers:
            assert replies[0] == "device Login successful"
            assert [reply["body"]["value"] for reply in replies[1:]] == list(
                range(1, PIPELINED + 1))
        await _assert_applied_in_order(server, http, tokens)



class RawWs(StreamClient):
    """A WebSocket client whose socket is read only when asked to: with a small receive buffer,
    the server's writes back up as soon as it stops reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: ClientProtocol) -> None:
        super().__init__(reader, writer)
        self.protocol = protocol
        self.frames: list[Frame] = []

    @classmethod
    async def open(cls, url: str, receive_buffer: int = 4096) -> RawWs:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        uri = parse_uri(url)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer)
        client = cls(reader, writer, ClientProtocol(uri, max_size=None))
        client.protocol.send_request(client.protocol.connect())
        client._flush()
        while not client.protocol.handshake_exc and client.protocol.state is State.CONNECTING:
            await client._read()
        assert client.protocol.state is State.OPEN, client.protocol.handshake_exc
        return client

    def _flush(self) -> None:
        self.writer.write(b"".join(self.protocol.data_to_send()))

    async def _read(self, timeout: float = 10) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            raise ConnectionError("closed by the server")
        self.protocol.receive_data(data)
        self.frames += [e for e in self.protocol.events_received() if isinstance(e, Frame)]

    async def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._flush()
        await self.writer.drain()

    async def ping(self, data: bytes = b"") -> None:
        self.protocol.send_ping(data)
        self._flush()
        await self.writer.drain()

    async def recv(self, timeout: float = 10) -> str:
        """The next text frame."""
        while True:
            while self.frames:
                frame = self.frames.pop(0)
                if frame.opcode is Opcode.TEXT:
                    return bytes(frame.data).decode()
            await self._read(timeout)


async def _read_until(ws: RawWs, count: int) -> list[Any]:
    return [json.loads(await ws.recv()) for _ in range(count)]


async def test_a_reader_that_falls_behind_resumes_when_it_reads_again(server: Server) -> None:
    token = server.register()
    ws = await RawWs.open(server.ws_url)
    await ws.send(json.dumps({"deviceToken": token}))
    assert await ws.recv() == "device Login successful"
    await ws.send(json.dumps({"deviceToken": token, "body": {
        "requestType": 100, "name": "n", "value": "x" * 20000}}))
    assert (await _read_until(ws, 1))[0]["code"] == 200
    for rounds in range(3):
        # More answers than the socket buffers hold, while reading nothing.
        for _ in range(300):
            await ws.send(json.dumps({"deviceToken": token, "body": {
                "requestType": 104, "name": "n"}}))
        await ws.send(_modify(token, rounds))  # a marker: the last answer
        await asyncio.sleep(0.5)
        answers = await _read_until(ws, 301)
        assert [a["cmd"] for a in answers] == [104] * 300 + [101]
    await ws.close()


def _rss_mb(server: Server) -> float:
    assert server.process is not None
    return rss_bytes(server.process.pid) / (1024 * 1024)


async def _flood_pushes(server: Server, token: str, count: int, size: int) -> None:
    """Change field `n` `count` times with `size`-byte values over another connection."""
    writer = await WsDevice.connect(server.ws_url, token)
    for start in range(0, count, 100):
        for value in range(start, start + 100):
            await writer.send({"deviceToken": token, "body": {
                "requestType": 101, "name": "n", "value": f"{value:08d}" + "x" * size}})
        for _ in range(100):
            await writer.recv(10)
    await writer.close()


async def test_an_mqtt_subscriber_that_never_reads_costs_bounded_memory(server: Server) -> None:
    mac = random_mac()
    token = server.register(mac)
    async with httpx.AsyncClient() as http:
        await http.post(f"{server.url}/api/v2/{token}/add",
                        json={"name": "n", "value": "0", "dataType": "string"})
    reader = await RawMqtt.device(server.mqtt_port, token, mac)
    await _flood_pushes(server, token, 300, 1500)  # warm up, then read everything
    while (await reader.recv_json(10))["body"]["value"][:8] != f"{299:08d}":
        pass
    before = _rss_mb(server)
    await _flood_pushes(server, token, 12_000, 1500)  # 38 MB of pushes, none read
    grown = _rss_mb(server) - before
    assert grown < 16, f"RSS grew {grown:.1f} MB"
    # Reading again, it gets the latest value (older ones were coalesced away).
    while (await reader.recv_json(10))["body"]["value"][:8] != f"{11_999:08d}":
        pass
    await reader.close()


async def test_a_ping_flood_without_login_is_dropped_with_bounded_memory(server: Server) -> None:
    flood = await RawWs.open(server.ws_url)
    before = _rss_mb(server)
    with contextlib.suppress(ConnectionError):
        for _ in range(1_000):
            for _ in range(100):
                flood.protocol.send_ping(b"p" * 125)
            flood._flush()
            await flood.writer.drain()
    assert await flood.closed_within(5)
    grown = _rss_mb(server) - before
    assert grown < 16, f"RSS grew {grown:.1f} MB"
    device = await WsDevice.connect(server.ws_url, server.register())  # others carry on
    await device.close()


async def test_a_websocket_that_never_logs_in_is_closed_after_ten_seconds(server: Server) -> None:
    idle = await RawWs.open(server.ws_url)
    device = await RawWs.open(server.ws_url)
    await device.send(json.dumps({"deviceToken": server.register()}))
    assert await device.recv() == "device Login successful"
    assert await idle.closed_within(12)
    await device.send(json.dumps({"deviceToken": "x", "body": "ping"}))
    assert await device.recv() == "pong"  # the logged-in one is kept
    await device.close()
