"""Three devicecloud processes on one PostgreSQL and one Redis, used the way people and devices use
them: a bind, an edit or a release on one process holds at once on the others, pushes cross
processes under load, and Redis restarting, freezing or going away loses nothing silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.console_client import ConsoleUser
from support.espai import Firmware, add_device, api, listed, new_tenant
from support.mqtt_clients import RawMqtt
from support.polling import eventually
from support.server import CLUSTER_POSTGRES, Server, postgres_database, postgres_problem, random_mac
from support.services import PrivateRedis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devicecloud.server import STOP_DEADLINE

ADMIN_URL = CLUSTER_POSTGRES



pytestmark = pytest.mark.skipif(bool(postgres_problem()), reason=postgres_problem() or "-")


@dataclass
class Cluster:
    redis: PrivateRedis
    processes: list[Server]

    def stop(self) -> list[int]:
        """SIGTERM to every process at once; their exit codes."""
        for process in self.processes:
            assert process.process is not None
            if process.process.poll() is None:
                process.process.send_signal(signal.SIGTERM)
        return [process.process.wait(STOP_DEADLINE + 5) for process in self.processes
                if process.process is not None]


def _cluster(folder: Path, size: int) -> Cluster:
    redis = PrivateRedis(folder)
    redis.start()
    data = folder / "data"
    url = postgres_database(data, ADMIN_URL)
    processes = [Server(data, extra_args=("--bus-url", redis.url),
                        env={"DEVICECLOUD_DATABASE_URL": url}).start() for _ in range(size)]
    return Cluster(redis, processes)


def _end(cluster: Cluster) -> None:
    for process in cluster.processes:
        if process.process is not None and process.process.poll() is None:
            process.stop(signal.SIGKILL)
    if cluster.redis.process is not None and cluster.redis.process.poll() is None:
        cluster.redis.process.send_signal(signal.SIGCONT)
        cluster.redis.stop()


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = _cluster(tmp_path_factory.mktemp("trio"), 3)
    yield cluster
    codes = cluster.stop()
    assert codes == [0, 0, 0], [p.log() for p in cluster.processes]
    _end(cluster)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    cluster = _cluster(tmp_path, 2)
    yield cluster
    _end(cluster)


def as_user_on(user: ConsoleUser, server: Server) -> ConsoleUser:
    """The same signed-in visitor, talking to another process."""
    other = ConsoleUser(server)
    other.http.cookies.update(user.http.cookies)
    other.email = user.email
    other.get("/console/devices")
    return other


async def _live(server: Server, user: ConsoleUser, token: str) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{server.http_port}/console/live/{token}",
                         additional_headers={"Cookie": user.cookie_header()}, origin=server.url)


async def _feed_until(feed: ClientConnection, kind: str, timeout: float = 8.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(await asyncio.wait_for(feed.recv(), deadline - time.monotonic()))
        if message["type"] == kind:
            return dict(message)


def _rest(server: Server, token: str, name: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = httpx.post(f"{server.url}/api/v2/{token}/add",
                                      json={"name": name, "value": value}).json()
    return body


async def _push_named(device: WsDevice, name: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        push = await device.recv_json(deadline - time.monotonic())
        if isinstance(push.get("body"), dict) and push["body"].get("name") == name:
            return dict(push)


# Authorisation follows the database on every process ---------------------------------------------

async def test_a_bind_on_one_process_holds_at_once_on_the_others(trio: Cluster) -> None:
    a, b, c = trio.processes
    token = a.register()
    for server in (b, c):  # every process has looked the device up before it is bound
        assert httpx.get(f"{server.url}/api/v2/{token}/list").json()["code"] == 200
    device = await WsDevice.connect(a.ws_url, token)
    owner = ConsoleUser.sign_up(a)
    assert owner.bind(token).status_code == 303
    assert (await device.recv_json(5))["cmd"] == 106
    on_b, on_c = as_user_on(owner, b), as_user_on(owner, c)
    assert on_b.get(f"/console/devices/{token}").status_code == 200
    reply = on_c.post(f"/console/devices/{token}/fields/add", name="lamp", type="number",
                      value="1")
    assert reply.status_code == 303, reply.text
    push = await _push_named(device, "lamp")
    assert push["cmd"] == 109 and push["body"]["value"] == 1
    feed = await _live(b, owner, token)
    assert (await _feed_until(feed, "snapshot"))["records"][0]["name"] == "lamp"
    await feed.close()
    await device.close()


async def test_a_release_on_one_process_is_refused_at_once_on_the_others(trio: Cluster) -> None:
    a, b, c = trio.processes
    token = a.register()
    device = await WsDevice.connect(a.ws_url, token)
    former = ConsoleUser.sign_up(a)
    former.bind(token)
    former_b, former_c = as_user_on(former, b), as_user_on(former, c)
    assert former_b.get(f"/console/devices/{token}").status_code == 200
    assert former_c.get(f"/console/devices/{token}").status_code == 200
    feed = await _live(b, former, token)
    await _feed_until(feed, "snapshot")

    assert former.post(f"/console/devices/{token}/release").status_code == 303
    assert (await _feed_until(feed, "released", timeout=3))["type"] == "released"
    for user in (former_b, former_c):
        assert user.get(f"/console/devices/{token}").status_code == 404
        edit = user.post(f"/console/devices/{token}/fields/add", name="x", type="number",
                         value="1")
        assert edit.status_code == 404
        assert user.post(f"/console/devices/{token}/release").status_code == 404

    newcomer = ConsoleUser.sign_up(c)
    assert newcomer.bind(token).status_code == 303
    newcomer.post(f"/console/devices/{token}/fields/add", name="secret", type="text",
                  value="mine")
    assert (await _push_named(device, "secret"))["body"]["value"] == "mine"
    with pytest.raises(InvalidStatus):
        await _live(b, former, token)
    for user in (former_b, former_c):
        assert "secret" not in user.get("/console/devices").text
        assert user.post(f"/console/devices/{token}/release").status_code == 404
    assert as_user_on(newcomer, b).get(f"/console/devices/{token}").status_code == 200
    await device.close()


async def test_espai_add_del_and_unbind_hold_across_processes(trio: Cluster) -> None:
    a, b, c = trio.processes
    tenant, rival = new_tenant(a), new_tenant(a)
    mac = random_mac()
    assert add_device(a, tenant, mac)["success"] is True
    assert add_device(b, rival, mac)["success"] is False  # bound to the first account
    rows = listed(c, tenant, device_id=mac)["data"]
    assert len(rows) == 1
    firmware = await Firmware.connect(a, mac, tenant.api_key)
    done = api(c, "/devices/del", [{"id": rows[0]["id"]}], tenant.open_api_key)
    assert done["success"] is True, done
    assert "设备已解绑" in (await firmware.recv())["message"]
    assert await firmware.closed()
    assert listed(b, tenant, device_id=mac)["data"] == []
    assert add_device(b, rival, mac)["success"] is True  # free again: the rival takes it
    assert listed(a, tenant, device_id=mac)["data"] == []
    firmware = await Firmware.connect(b, mac, rival.api_key)
    done = api(a, "/devices/unbind", {"api_key": rival.api_key, "device_id": mac},
               rival.open_api_key)
    assert done["success"] is True, done
    assert "设备已解绑" in (await firmware.recv())["message"]


# Cluster-wide rules -------------------------------------------------------------------------------

async def test_an_mqtt_client_id_is_taken_over_across_processes(trio: Cluster) -> None:
    a, b, _ = trio.processes
    mac = random_mac()
    token = a.register(mac)
    first = await RawMqtt.device(a.mqtt_port, token, mac)
    second = await RawMqtt.device(b.mqtt_port, token, mac)
    assert await first.closed_within(5), "the older connection with that client id was closed"
    await second.publish(token, {"deviceToken": token, "body": {"requestType": 100,
                                                                  "name": "t", "value": 1}})
    assert (await second.recv_json())["code"] == 200
    await second.close()


async def test_every_push_crosses_while_the_writing_process_is_loaded(trio: Cluster) -> None:
    a, b, _ = trio.processes
    watcher_mac = random_mac()
    token = a.register(watcher_mac)
    # An MQTT device is sent every push (a WebSocket one is paced, and coalesces a burst).
    watcher = await RawMqtt.device(b.mqtt_port, token, watcher_mac)
    loaders = []
    for _ in range(8):
        mac = random_mac()
        own = a.register(mac)
        loaders.append((own, await RawMqtt.device(a.mqtt_port, own, mac)))
    stop = asyncio.Event()

    async def load(own: str, client: RawMqtt) -> int:
        count = 0
        await client.publish(own, {"deviceToken": own, "body": {"requestType": 100,
                                                                  "name": "n", "value": 0}})
        await client.recv_json()
        while not stop.is_set():
            for value in range(20):
                await client.publish(own, {"deviceToken": own, "body": {
                    "requestType": 101, "name": "n", "value": value}})
            for _ in range(20):
                assert (await client.recv_json(10))["code"] == 200
            count += 20
        return count

    loading = [asyncio.create_task(load(own, client)) for own, client in loaders]
    async with httpx.AsyncClient() as http:
        for value in range(1, 201):
            reply = await http.post(f"{a.url}/api/v2/{token}/add",
                                    json={"name": "seq", "value": value})
            assert reply.json()["code"] == 200
    received = []
    while len(received) < 200:
        push = await watcher.recv_json(10)
        received.append(push["body"]["value"])
    stop.set()
    writes = sum(await asyncio.gather(*loading))
    assert received == list(range(1, 201)), "every push arrived, in order, once"
    assert _rest(a, token, "marker", "end")["code"] == 200
    assert (await watcher.recv_json(5))["body"]["name"] == "marker"  # and nothing else between
    health = httpx.get(f"{a.url}/healthz").json()
    assert health["bus"]["dropped"] == 0 and writes > 0, health
    for _, client in loaders:
        await client.close()
    await watcher.close()


# Redis restarting, frozen, or gone ------------------------------------------------------------

def _status(server: Server, token: str) -> dict[str, Any]:
    url = f"{server.url}/api/v1/devices/{token}/status"
    doc: dict[str, Any] = httpx.get(url, timeout=10).json()
    return dict(doc["data"])


async def test_a_redis_restart_keeps_presence_and_pushes(pair: Cluster) -> None:
    a, b = pair.processes
    token = a.register()
    device = await WsDevice.connect(a.ws_url, token)
    eventually(lambda: _status(b, token)["online"], "online elsewhere", 15)
    pair.redis.stop()
    pair.redis.start()  # empty: it keeps nothing on disk
    eventually(lambda: _status(b, token)["online"],
               "presence came back without the device reconnecting", 8)
    eventually(lambda: httpx.get(f"{b.url}/healthz").json()["status"] == "ok", "healthy again",
               15)
    assert _rest(b, token, "after", 1)["code"] == 200
    assert (await _push_named(device, "after"))["body"]["value"] == 1
    await device.close()


async def test_a_frozen_redis_is_reported_and_never_delivers_twice(pair: Cluster) -> None:
    a, b = pair.processes
    token = a.register()
    device = await WsDevice.connect(a.ws_url, token)
    assert _rest(b, token, "before", 1)["code"] == 200
    await _push_named(device, "before")
    assert pair.redis.process is not None
    pair.redis.process.send_signal(signal.SIGSTOP)
    try:
        eventually(lambda: httpx.get(f"{b.url}/healthz", timeout=5).json()["status"]
                   == "degraded", "degraded", 10)
        started = time.monotonic()
        _status(b, token)
        assert time.monotonic() - started < 1.5, "a presence read waits at most briefly"
        assert (await device.request(100, name="local", value=2))["code"] == 200
        assert _rest(b, token, "during", 3)["code"] == 200
    finally:
        pair.redis.process.send_signal(signal.SIGCONT)
    eventually(lambda: all(httpx.get(f"{s.url}/healthz").json()["status"] == "ok"
                           for s in pair.processes), "healthy again", 15)
    assert _rest(b, token, "marker", 4)["code"] == 200
    seen: dict[str, list[Any]] = {}
    while "marker" not in seen:
        push = await device.recv_json(10)
        seen.setdefault(push["body"]["name"], []).append(push["body"]["value"])
    assert seen.get("during", [3]) == [3], seen  # current value, at most once
    assert seen.get("before") is None, seen  # an event delivered before is not sent again
    assert await device.before_marker() == []
    await device.close()


# Stopping -------------------------------------------------------------------------------------

@pytest.mark.parametrize("redis_state", ["up", "frozen", "down"])
async def test_sigterm_after_load_stops_every_process(pair: Cluster, redis_state: str) -> None:
    a, b = pair.processes
    devices = []
    for index in range(6):
        server = pair.processes[index % 2]
        devices.append(await WsDevice.connect(server.ws_url, server.register()))

    async def write(device: WsDevice) -> None:
        for value in range(300):
            await device.send({"deviceToken": device.token, "body": {
                "requestType": 100 if value == 0 else 101, "name": "v", "value": value}})
        for _ in range(300):
            await device.recv(10)

    # Watch each other's devices so events cross both ways under the load.
    feeds = [await WsDevice.connect(pair.processes[(i + 1) % 2].ws_url, d.token)
             for i, d in enumerate(devices)]
    await asyncio.gather(*(write(device) for device in devices))
    assert pair.redis.process is not None
    if redis_state == "frozen":
        pair.redis.process.send_signal(signal.SIGSTOP)
    elif redis_state == "down":
        pair.redis.stop()
    started = time.monotonic()
    for server in (a, b):
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)  # both at once, and once only
    codes = [server.process.wait(STOP_DEADLINE + 5) for server in (a, b) if server.process]
    assert codes == [0, 0], [server.log()[-3000:] for server in (a, b)]
    assert time.monotonic() - started < STOP_DEADLINE
    for client in devices + feeds:
        with contextlib.suppress(ConnectionClosed):
            await client.close()


def test_the_workers_supervisor_stops_with_redis_frozen(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    url = postgres_database(data, ADMIN_URL)
    server = Server(data, extra_args=("--bus-url", redis.url, "--workers", "2"),
                    env={"DEVICECLOUD_DATABASE_URL": url}).start()
    try:
        for _ in range(20):
            server.register()
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        assert server.stop(timeout=STOP_DEADLINE + 10) == 0, server.log()[-3000:]
        assert time.monotonic() - started < STOP_DEADLINE + 5
    finally:
        if redis.process is not None:
            redis.process.send_signal(signal.SIGCONT)
            redis.stop()
        if server.process is not None and server.process.poll() is None:
            server.process.kill()

