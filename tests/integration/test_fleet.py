"""Three devicecloud processes serving one fleet over PostgreSQL, Redis and Mosquitto.

Devices on WebSocket connect to one process each; devices on MQTT connect to the broker, whose
up messages the processes split among themselves. One process is killed with SIGKILL under load:
its WebSocket devices reconnect to the others, its share of the MQTT devices moves to the others,
no acknowledged write is lost, and presence converges within the documented bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from support.clients import WsDevice
from support.console_client import ConsoleUser
from support.mqtt_clients import RawMqtt
from support.polling import eventually
from support.server import POSTGRES_ADMIN_URL, Server, free_port, postgres_database, random_mac
from support.services import Mosquitto, PrivateRedis, start_mosquitto
from websockets.exceptions import ConnectionClosed

from devicecloud.gateways.partition import REFRESH_SECONDS, SETTLE_SECONDS
from devicecloud.gateways.presence import INSTANCE_TTL, REFRESH_EVERY
from devicecloud.protocols import mqtt

ADMIN_URL = POSTGRES_ADMIN_URL or f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"
PRESENCE_BOUND = INSTANCE_TTL + REFRESH_EVERY  # documented in docs/operations.md
LOAD_BEFORE_KILL = 3.0
LOAD_AFTER_KILL = PRESENCE_BOUND + 3.0


def _postgres_problem() -> str:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as problem:
        return f"PostgreSQL is not reachable at {ADMIN_URL} ({problem})"
    for program in ("redis-server", "mosquitto"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return ""


pytestmark = pytest.mark.skipif(bool(_postgres_problem()), reason=_postgres_problem() or "-")


@dataclass
class Fleet:
    processes: list[Server]
    broker: Mosquitto
    database_url: str


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    broker = start_mosquitto(tmp_path / "mosquitto", free_port(), free_port())
    data = tmp_path / "data"
    database_url = postgres_database(data, ADMIN_URL)
    processes = [Server(data, extra_args=("--bus-url", redis.url, "--mqtt-broker",
                                          broker.broker_url),
                        env={"DEVICECLOUD_DATABASE_URL": database_url})
                 for _ in range(3)]
    try:
        for process in processes:
            process.start()
        yield Fleet(processes, broker, database_url)
    finally:
        for process in processes:
            if process.process is not None and process.process.poll() is None:
                process.stop()
        broker.process.terminate()
        broker.process.wait(10)
        redis.stop()


async def _mqtt_next(client: RawMqtt, timeout: float) -> dict[str, Any]:
    """The next message on the device's down topic."""
    while True:
        packet = await client.recv(timeout)
        if isinstance(packet, mqtt.Publish):
            message: dict[str, Any] = json.loads(packet.payload)
            return message


async def _before_pong(client: RawMqtt, token: str) -> list[Any]:
    """What the device is sent before the answer to a heartbeat it sends now."""
    await client.publish(token, {"deviceToken": token, "body": "ping"})
    others = []
    while (packet := await client.recv()) != mqtt.Publish(f"$ezdata/{token}/down", b"pong"):
        others.append(packet)
    return others


def _transports(process: Server, token: str) -> list[str]:
    status = httpx.get(f"{process.url}/api/v1/devices/{token}/status").json()["data"]
    return list(status["transports"]) if status["online"] else []


async def test_pushes_cross_processes_once_each(fleet: Fleet) -> None:
    first, second, third = fleet.processes
    mac = random_mac()
    token = first.register(mac=mac)
    ws = await WsDevice.connect(first.ws_url, token)
    over_mqtt = await RawMqtt.device(fleet.broker.device_port, token, mac)
    for process in fleet.processes:  # the broker's presence notices reach every process
        await asyncio.to_thread(eventually, lambda p=process: _transports(p, token) == [
            "mqtt", "websocket"], "both connections seen")
    try:
        user = ConsoleUser.sign_up(second)
        assert user.bind(token).status_code == 303
        assert (await ws.recv_json(timeout=4))["cmd"] == 106
        assert (await _mqtt_next(over_mqtt, 4))["cmd"] == 106
        group = f"/console/devices/{token}"
        reply = user.post(f"{group}/fields/add", name="led", type="number", value="1")
        assert reply.status_code == 303
        pushed = await ws.recv_json(timeout=4)
        assert pushed["cmd"] == 109 and pushed["body"]["value"] == 1
        assert (await _mqtt_next(over_mqtt, 4))["cmd"] == 109
        await ws.request(103)  # as Tab5 does after a push: lets the next push through
        async with httpx.AsyncClient() as http:
            done = await http.post(f"{third.url}/api/v2/{token}/add",
                                   json={"name": "led", "value": 0})
            assert done.json()["code"] == 200
        pushed = await ws.recv_json(timeout=4)
        assert pushed["cmd"] == 107 and pushed["body"]["value"] == 0
        assert (await _mqtt_next(over_mqtt, 4))["cmd"] == 107
        assert await ws.before_marker() == [], "each change is pushed once"
        assert await _before_pong(over_mqtt, token) == [], "each change is pushed once"
        for process in fleet.processes:
            assert _transports(process, token) == ["mqtt", "websocket"]
    finally:
        await ws.close()
        await over_mqtt.close()


async def test_each_up_message_is_answered_once_by_the_live_instances(fleet: Fleet) -> None:
    # Mosquitto cannot share $ezdata subscriptions: the three split the devices among the live.
    await asyncio.sleep(SETTLE_SECONDS + REFRESH_SECONDS)  # the last one started has settled
    devices = []
    for _ in range(6):
        mac = random_mac()
        token = fleet.processes[0].register(mac=mac)
        devices.append((token, await RawMqtt.device(fleet.broker.device_port, token, mac)))
    for token, client in devices:
        for i in range(50):
            await client.publish(token, {"deviceToken": token, "body": {
                "requestType": 100, "name": f"n{i}", "value": i}})
    for token, client in devices:
        names = [(await _mqtt_next(client, 5))["body"]["name"] for _ in range(50)]
        assert names == [f"n{i}" for i in range(50)], "answered once each, in order"
        assert await _before_pong(client, token) == [], "answered once each"
        await client.close()


@dataclass
class Writer:
    """A device writing 1, 2, 3, ... to its field `n`, one request at a time, retrying a request
    that got no answer; it notes every value acknowledged."""

    token: str
    mac: str
    acknowledged: list[int] = field(default_factory=list)
    acknowledged_at: list[float] = field(default_factory=list)
    reconnects: list[float] = field(default_factory=list)

    def acknowledge(self, value: int) -> None:
        self.acknowledged.append(value)
        self.acknowledged_at.append(time.monotonic())

    def longest_silence(self) -> float:
        """The longest time between two acknowledgements."""
        times = self.acknowledged_at
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    @property
    def last(self) -> int:
        return self.acknowledged[-1] if self.acknowledged else 0


async def _ws_writer(writer: Writer, urls: list[str], home: int, stop: asyncio.Event) -> None:
    choice = home
    device = await WsDevice.connect(urls[choice], writer.token)
    value = 1
    while not stop.is_set():
        try:
            answer = await device.request(101, name="n", value=value)
        except (ConnectionClosed, OSError, TimeoutError):
            lost = time.monotonic()
            while True:  # the device's own reconnect: try the next address, then the next
                choice = (choice + 1) % len(urls)
                try:
                    device = await WsDevice.connect(urls[choice], writer.token, open_timeout=2)
                    break
                except (OSError, TimeoutError, ConnectionClosed):
                    await asyncio.sleep(0.1)
            writer.reconnects.append(time.monotonic() - lost)
            continue
        assert answer["code"] == 200, answer
        writer.acknowledge(value)
        value += 1
    await device.close()


async def _mqtt_writer(writer: Writer, port: int, stop: asyncio.Event) -> None:
    client = await RawMqtt.device(port, writer.token, writer.mac)
    value = 1
    while not stop.is_set():
        await client.publish(writer.token, {"deviceToken": writer.token, "body": {
            "requestType": 101, "name": "n", "value": value}})
        try:
            answer = await _mqtt_next(client, 1.0)
        except TimeoutError:
            continue  # unanswered: send the same value again
        if answer.get("cmd") != 101 or answer["body"]["value"] != value:
            continue  # a late answer to an earlier try
        assert answer["code"] == 200, answer
        writer.acknowledge(value)
        value += 1
    await client.close()


def _stored(database_url: str) -> dict[str, tuple[int, set[int]]]:
    """Per device token: the field's value and every value in its history."""
    found: dict[str, tuple[int, set[int]]] = {}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT d.token, f.value, h.value FROM devices d "
                            "JOIN fields f ON f.device_id = d.id AND f.name = 'n' "
                            "JOIN field_history h ON h.field_id = f.id").fetchall()
    for token, value, past in rows:
        found.setdefault(token, (int(value), set()))[1].add(int(past))
    return found


async def _offline_after(process: Server, token: str, since: float) -> float:
    await asyncio.to_thread(eventually, lambda: _transports(process, token) == [],
                            "presence converged", since + PRESENCE_BOUND + 5 - time.monotonic())
    return time.monotonic() - since


async def test_a_process_killed_under_load_loses_no_acknowledged_write(fleet: Fleet) -> None:
    first, second, third = fleet.processes
    urls = [process.ws_url for process in fleet.processes]
    ws_writers = [Writer(first.register(mac=mac), mac) for mac in
                  (random_mac() for _ in range(30))]
    mqtt_writers = [Writer(first.register(mac=mac), mac) for mac in
                    (random_mac() for _ in range(12))]
    for writer in ws_writers + mqtt_writers:  # the field each device then modifies
        created = httpx.post(f"{first.url}/api/v2/{writer.token}/add",
                             json={"name": "n", "value": 0}).json()
        assert created["code"] == 200, created
    stranded_mac = random_mac()
    stranded = await WsDevice.connect(second.ws_url, second.register(mac=stranded_mac))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_ws_writer(w, urls, i % 3, stop))
             for i, w in enumerate(ws_writers)]
    tasks += [asyncio.create_task(_mqtt_writer(w, fleet.broker.device_port, stop))
              for w in mqtt_writers]
    await asyncio.sleep(LOAD_BEFORE_KILL)
    second.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    at_kill = {w.token: w.last for w in mqtt_writers}
    convergence = await _offline_after(first, stranded.token, killed_at)
    await asyncio.sleep(max(0.0, LOAD_AFTER_KILL - (time.monotonic() - killed_at)))
    stop.set()
    await asyncio.gather(*tasks)

    stored = _stored(fleet.database_url)
    writers = ws_writers + mqtt_writers
    for writer in writers:
        value, history = stored[writer.token]
        assert value >= writer.last, "an acknowledged write was lost"
        assert set(writer.acknowledged) <= history, "an acknowledged change is missing"
    moved = [w for w in ws_writers if w.reconnects]
    assert len(moved) == 10, "the killed process's WebSocket devices reconnected elsewhere"
    progressed = [w for w in mqtt_writers if w.last > at_kill[w.token] > 0]
    reconnect_times = [t for w in moved for t in w.reconnects]
    figures = {
        "acknowledged_writes": sum(len(w.acknowledged) for w in writers),
        "acknowledged_found": sum(len(set(w.acknowledged) & stored[w.token][1])
                                  for w in writers),
        "reconnect_median_s": round(statistics.median(reconnect_times), 3),
        "reconnect_max_s": round(max(reconnect_times), 3),
        "mqtt_takeover_max_s": round(max(w.longest_silence() for w in mqtt_writers), 2),
        "presence_convergence_s": round(convergence, 2),
        "presence_bound_s": PRESENCE_BOUND,
        "mqtt_devices_answered_after_kill": f"{len(progressed)}/{len(mqtt_writers)}",
    }
    print("fleet figures:", json.dumps(figures))
    if path := os.environ.get("DEVICECLOUD_FLEET_FIGURES"):
        Path(path).write_text(json.dumps(figures, indent=2))
    assert figures["acknowledged_found"] == figures["acknowledged_writes"]
    assert convergence <= PRESENCE_BOUND
    assert len(progressed) == len(mqtt_writers), "the survivors took the MQTT devices over"
    await _mqtt_devices_all_answered(fleet, mqtt_writers)
    for process in (first, third):
        assert process.stop() == 0, process.log()


async def _mqtt_devices_all_answered(fleet: Fleet, writers: list[Writer]) -> None:
    """After the takeover every MQTT device is answered again, by the survivors."""
    for writer in writers:
        client = await RawMqtt.device(fleet.broker.device_port, writer.token, writer.mac)
        await client.publish(writer.token, {"deviceToken": writer.token, "body": {
            "requestType": 104, "name": "n"}})
        answer = await _mqtt_next(client, 3.0)
        assert answer["code"] == 200 and answer["body"]["value"] >= writer.last
        await client.close()


def test_workers_refuse_without_a_shared_database_and_bus(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "devicecloud", "serve", "--workers", "2",
               "--data-dir", str(tmp_path / "data"), "--http-port", str(free_port())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "shared database" in done.stderr
    postgres = postgres_database(tmp_path / "pg", ADMIN_URL)
    done = subprocess.run([*command, "--database-url", postgres], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0 and "shared bus" in done.stderr


def _children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(line) for line in found.stdout.split()}


async def test_workers_share_the_ports_and_are_restarted(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    server = Server(data, extra_args=("--workers", "2", "--bus-url", redis.url),
                    env={"DEVICECLOUD_DATABASE_URL": postgres_database(data, ADMIN_URL)})
    try:
        server.start()
        assert server.process is not None
        workers = _children(server.process.pid)
        assert len(workers) == 2
        mac = random_mac()
        token = server.register(mac=mac)
        devices = [await WsDevice.connect(server.ws_url, token) for _ in range(6)]
        over_mqtt = [await RawMqtt.device(server.mqtt_port, token, mac, style=style)
                     for style in ("ez", "m5")]  # one client id each: two live MQTT sessions
        for value in range(10):  # each on a new connection: the kernel spreads them
            assert httpx.post(f"{server.url}/api/v2/{token}/add",
                              json={"name": "n", "value": value}).json()["code"] == 200
            for device in devices:
                pushed = await device.recv_json(timeout=4)
                assert pushed["body"]["value"] == value
                await device.request(103)
            for client in over_mqtt:
                assert (await _mqtt_next(client, 4))["value"] == value
        for client in over_mqtt:
            await client.close()
        os.kill(min(workers), signal.SIGKILL)
        pid = server.process.pid
        await asyncio.to_thread(eventually, lambda: len(_children(pid) - {min(workers)}) >= 2,
                                "the dead worker started again", 20)
        for _ in range(20):
            assert httpx.get(f"{server.url}/healthz").status_code == 200
        for device in devices:
            with contextlib.suppress(ConnectionClosed):
                await device.close()
        assert server.stop() == 0, server.log()
        assert not _children(server.process.pid)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop(signal.SIGKILL)
        redis.stop()
