"""The licence-free way to run devicecloud on several machines (docs/operations.md, "Many
machines"): every instance runs its built-in MQTT listener and TLS on one PostgreSQL and one
Redis, behind HAProxy in TCP mode with the shipped configuration (deploy/haproxy/). Devices on
MQTT over TLS and on WSS land on any instance through the balancer; a write over HTTPS through it
reaches each device as a push, whichever instance holds it; an instance killed under load loses no
acknowledged write and its devices come back through the balancer to the others."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.mqtt_clients import RawMqtt
from support.polling import eventually
from support.server import CLUSTER_POSTGRES, postgres_database, postgres_problem, random_mac
from support.services import Balancer, PrivateRedis, start_balancer
from support.tls import TlsFiles, TlsServer, mqtts_device

from devicecloud.protocols import mqtt
from devicecloud.protocols.ezdata_mqtt import up_topic

INSTANCES = 3


def _problem() -> str:
    if shutil.which("haproxy") is None:
        return "haproxy is not installed (apt-get install haproxy)"
    return postgres_problem(CLUSTER_POSTGRES)


pytestmark = pytest.mark.skipif(bool(_problem()), reason=_problem() or "-")


@dataclass
class Fleet:
    files: TlsFiles
    instances: list[TlsServer]
    balancer: Balancer

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.balancer.ports['https']}"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.https_url, verify=self.files.client(), timeout=10)

    def connections(self, instance: TlsServer) -> float:
        """The device connections `instance` holds, by its own /metrics."""
        text = httpx.get(f"{instance.server.url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("devicecloud_connections{"))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    files = TlsFiles(tmp_path / "tls")
    data = tmp_path / "data"
    env = {"DEVICECLOUD_DATABASE_URL": postgres_database(data, CLUSTER_POSTGRES)}
    instances = []
    for _ in range(INSTANCES):
        instance = TlsServer.make(data, files, "--bus-url", redis.url)
        instance.server.env.update(env)
        instances.append(instance.start())
    balancer = start_balancer(tmp_path / "haproxy", {
        "mqtt": [i.server.mqtt_port for i in instances],
        "mqtts": [i.mqtts_port for i in instances],
        "http": [i.server.http_port for i in instances],
        "https": [i.https_port for i in instances]})
    try:
        yield Fleet(files, instances, balancer)
    finally:
        balancer.stop()
        for instance in instances:
            if instance.server.process is not None and instance.server.process.poll() is None:
                instance.server.stop()
        redis.stop()


async def register(fleet: Fleet, count: int) -> list[tuple[str, str]]:
    async with fleet.http() as http:
        macs = [random_mac() for _ in range(count)]
        replies = await asyncio.gather(*(http.post("/api/v2/device/registerMac",
                                                   json={"mac": mac, "deviceType": "core2"})
                                         for mac in macs))
    return [(reply.json()["data"], mac) for reply, mac in zip(replies, macs, strict=True)]


async def mqtt_request(device: RawMqtt, token: str, **body: Any) -> dict[str, Any]:
    await device.send(mqtt.encode(mqtt.Publish(up_topic(token), json.dumps(
        {"deviceToken": token, "body": body}).encode())))
    while True:
        packet = await asyncio.wait_for(device.recv(), 5)
        if isinstance(packet, mqtt.Publish):
            answer: dict[str, Any] = json.loads(packet.payload)
            return answer


async def test_devices_behind_the_balancer_get_pushes_from_any_instance(fleet: Fleet) -> None:
    devices = await register(fleet, 12)
    context = fleet.files.client()
    on_mqtt = [await mqtts_device(fleet.balancer.ports["mqtts"], context, token, mac)
               for token, mac in devices[:8]]
    wss = f"wss://localhost:{fleet.balancer.ports['https']}/ws"
    on_ws = [await WsDevice.connect(wss, token, ssl=context) for token, _ in devices[8:]]
    for client, (token, _) in zip(on_mqtt, devices, strict=False):
        assert (await mqtt_request(client, token, requestType=100, name="level",
                                   value=0))["code"] == 200
    for ws in on_ws:
        assert (await ws.request(100, name="level", value=0))["code"] == 200
    held = eventually(lambda: [fleet.connections(i) for i in fleet.instances]
                      if sum(fleet.connections(i) for i in fleet.instances) == 12 else None,
                      "every device counted by an instance")
    assert all(count >= 2 for count in held), held  # leastconn spread them over every instance

    async with fleet.http() as http:  # each write lands on any instance
        for n, (token, _) in enumerate(devices, 1):
            reply = await http.post(f"/api/v2/{token}/add",
                                    json={"name": "level", "value": n, "dataType": "number"})
            assert reply.json()["code"] == 200
    for n, client in enumerate(on_mqtt, 1):
        push = await mqtt_push(client)
        assert push["cmd"] == 107 and push["body"]["value"] == n
    for n, ws in enumerate(on_ws, len(on_mqtt) + 1):
        push = await ws.recv_json(5)
        assert push["cmd"] == 107 and push["body"]["value"] == n
    for client in on_mqtt:
        await client.close()
    for ws in on_ws:
        await ws.close()


async def mqtt_push(client: RawMqtt) -> dict[str, Any]:
    packet = await asyncio.wait_for(client.recv(), 5)
    assert isinstance(packet, mqtt.Publish), packet
    push: dict[str, Any] = json.loads(packet.payload)
    return push


async def _writer(fleet: Fleet, token: str, mac: str, acknowledged: list[int],
                  stop: asyncio.Event) -> None:
    """Writes 1, 2, 3... over MQTT/TLS through the balancer, reconnecting when its instance
    goes; `acknowledged` holds every value answered with code 200."""
    context = fleet.files.client()
    while not stop.is_set():
        try:
            client = await mqtts_device(fleet.balancer.ports["mqtts"], context, token, mac)
        except (OSError, AssertionError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.2)
            continue
        try:
            while not stop.is_set():
                n = (acknowledged[-1] if acknowledged else 0) + 1
                answer = await mqtt_request(client, token, requestType=101, name="n", value=n)
                if answer["code"] == 200:
                    acknowledged.append(n)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await client.close()


async def test_an_instance_killed_under_load_loses_no_acknowledged_write(fleet: Fleet) -> None:
    devices = await register(fleet, 9)
    async with fleet.http() as http:
        for token, _ in devices:
            await http.post(f"/api/v2/{token}/add",
                            json={"name": "n", "value": 0, "dataType": "number"})
    stop = asyncio.Event()
    acknowledged: list[list[int]] = [[] for _ in devices]
    writers = [asyncio.create_task(_writer(fleet, token, mac, acknowledged[i], stop))
               for i, (token, mac) in enumerate(devices)]
    await asyncio.to_thread(eventually, lambda: all(len(done) >= 5 for done in acknowledged),
                            "writes going on", 15)
    victim = fleet.instances[0].server
    assert victim.process is not None and fleet.connections(fleet.instances[0]) > 0
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    counts = [len(done) for done in acknowledged]
    await asyncio.to_thread(eventually, lambda: all(
        len(done) >= count + 20 for done, count in zip(acknowledged, counts, strict=True)),
        "every device writing again, through the balancer to the others", 20)
    stop.set()
    await asyncio.wait(writers, timeout=10)
    async with fleet.http() as http:
        for (token, _), done in zip(devices, acknowledged, strict=True):
            stored = (await http.get(f"/api/v2/{token}/dataByKey/n")).json()["data"]["value"]
            assert stored >= done[-1], (token, stored, done[-1])
