"""The event log and `GET /api/v1/events`, against real servers over real sockets: a device's
writes over WebSocket and MQTT, deletions, uploads, binds and releases, presence; resuming with
Last-Event-ID; the filters; one account never seeing another's events; an unbound device's
writes logging nothing; an event surviving a SIGKILL right after its change was acknowledged;
and a write on one process of a cluster reaching the stream another serves."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.console_client import ConsoleUser
from support.espai import add_device, api, new_tenant
from support.mqtt_clients import RawMqtt
from support.server import CLUSTER_POSTGRES, Server, postgres_database, postgres_problem, random_mac
from support.services import PrivateRedis

from devicecloud.protocols import mqtt


class Stream:
    """A Server-Sent Events client of /api/v1/events, reading one event at a time."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next event: its `id:`, `event:` and parsed `data:` lines."""
        return await asyncio.wait_for(self._event(), timeout)

    async def _event(self) -> dict[str, Any]:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if not line:
                if "data" in fields:
                    doc: dict[str, Any] = json.loads(fields["data"])
                    assert doc["id"] == fields["id"] and doc["type"] == fields["event"], fields
                    return doc
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    async def until(self, kind: str, timeout: float = 5.0) -> tuple[list[dict[str, Any]],
                                                                    dict[str, Any]]:
        """The events before the next one of type `kind`, and that one."""
        before = []
        deadline = time.monotonic() + timeout
        while (event := await self.next(max(0.1, deadline - time.monotonic())))["type"] != kind:
            before.append(event)
        return before, event


class Account:
    """A console user and their open_api_key."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.console = ConsoleUser.sign_up(server)
        self.key = self.console.api_key()

    def bind(self, token: str) -> None:
        assert self.console.bind(token).status_code == 303

    def release(self, token: str) -> None:
        assert "released" in self.console.flash(
            self.console.post(f"/console/devices/{token}/release"))

    @asynccontextmanager
    async def events(self, last_id: str | None = None, **query: str) -> AsyncIterator[Stream]:
        headers = {"Authorization": f"Bearer {self.key}"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http, \
                http.stream("GET", f"{self.server.url}/api/v1/events", params=query,
                            headers=headers) as reply:
            assert reply.status_code == 200, await reply.aread()
            assert reply.headers["content-type"].startswith("text/event-stream")
            yield Stream(reply.aiter_lines())


async def marker(account: Account, stream: Stream) -> list[dict[str, Any]]:
    """The events the stream gives before a field change made now on a device of `account`'s
    own (the way to see that nothing else came, without waiting for silence)."""
    token = account.server.register()
    account.bind(token)
    async with httpx.AsyncClient() as http:
        done = await http.post(f"{account.server.url}/api/v2/{token}/add",
                               json={"name": "marker", "value": 1})
        assert done.json()["code"] == 200
    before, _ = await stream.until("field.changed")
    while before and before[-1]["type"] == "device.bound":
        before.pop()  # the marker device's own bind
    return before


async def ws_write(server: Server, token: str, request: int, **body: Any) -> dict[str, Any]:
    device = await WsDevice.connect(server.ws_url, token)
    try:
        reply: dict[str, Any] = await device.request(request, **body)
        return reply
    finally:
        await device.close()


def _data(event: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = event["data"]
    return found


async def test_a_device_s_writes_over_websocket_and_mqtt_are_events(server: Server) -> None:
    ada = Account(server)
    mac = random_mac()
    token = server.register(mac)
    async with ada.events() as stream:
        ada.bind(token)
        bound = await stream.next()
        assert bound["type"] == "device.bound" and set(bound) == {"id", "type", "created", "data"}
        device = _data(bound)["device"]
        assert re.fullmatch(r"[0-9a-f]{32}", device) and token not in json.dumps(bound)
        ws = await WsDevice.connect(server.ws_url, token)
        assert (await stream.next())["data"] == {"device": device, "transport": "websocket"}
        assert (await ws.request(100, name="t", value=21.5))["code"] == 200
        assert (await ws.request(101, name="t", value={"a": [1, 2]}))["code"] == 200
        changes = [await stream.next(), await stream.next()]
        assert [(e["type"], e["data"]) for e in changes] == [
            ("field.changed", {"device": device, "name": "t", "value": 21.5,
                               "source": "device"}),
            ("field.changed", {"device": device, "name": "t", "value": {"a": [1, 2]},
                               "source": "device"})]
        assert int(changes[0]["id"]) < int(changes[1]["id"])
        await ws.close()
        offline = await stream.next()
        assert (offline["type"], offline["data"]["transport"]) == ("device.offline", "websocket")
        client = await RawMqtt.device(server.mqtt_port, token, mac)
        assert (await stream.next())["type"] == "device.online"
        await client.publish(token, {"deviceToken": token, "body": {
            "requestType": 101, "name": "t", "value": 7}}, 1, 5)
        assert await client.recv() == mqtt.Puback(5)
        changed = await stream.next()
        assert (changed["type"], changed["data"]["value"]) == ("field.changed", 7)
        assert abs(changed["created"] - time.time() * 1000) < 60_000
        await client.close()
        assert (await stream.next())["type"] == "device.offline"


async def test_deletions_uploads_and_releases_are_events(server: Server) -> None:
    ada = Account(server)
    token = server.register()
    ada.bind(token)
    async with ada.events() as stream, httpx.AsyncClient() as http:
        assert (await ws_write(server, token, 100, name="gone", value=1))["code"] == 200
        assert (await ws_write(server, token, 102, name="gone"))["code"] == 200
        uploaded = await http.post(f"{server.url}/api/v2/device/uploadDeviceFile",
                                   data={"deviceToken": token, "name": "photo"},
                                   files={"file": ("cat.jpeg", b"\xff\xd8\xff" + b"j" * 99)})
        url = uploaded.json()["data"]["value"]
        ada.release(token)
        before, released = await stream.until("device.released")
    kinds = [(e["type"], {k: v for k, v in e["data"].items() if k != "device"})
             for e in (*before, released) if e["type"] not in ("device.online", "device.offline")]
    assert kinds == [
        ("field.changed", {"name": "gone", "value": 1, "source": "device"}),
        ("field.deleted", {"name": "gone", "source": "device"}),
        ("file.uploaded", {"name": "photo", "value": url, "source": "device"}),
        ("device.released", {})]


async def test_binds_edits_and_releases_through_the_api_are_events(server: Server) -> None:
    ada = Account(server)
    token = server.register()
    async with ada.events() as stream, httpx.AsyncClient(
            base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {ada.key}"}) as api:
        bound = await api.post("/devices", json={"token": token})
        assert bound.status_code == 200, bound.text
        device = bound.json()["id"]
        assert (await api.put(f"/devices/{device}/fields/fan", json={"value": 3})).is_success
        assert (await api.delete(f"/devices/{device}/fields/fan")).status_code == 204
        assert (await api.delete(f"/devices/{device}")).status_code == 204
        events = [await stream.next() for _ in range(4)]
    assert [(e["type"], e["data"]) for e in events] == [
        ("device.bound", {"device": device}),
        ("field.changed", {"device": device, "name": "fan", "value": 3, "source": "user"}),
        ("field.deleted", {"device": device, "name": "fan", "source": "user"}),
        ("device.released", {"device": device})]


async def test_a_stopping_server_ends_its_streams(own_server: Server) -> None:
    server = own_server.start()
    ada = Account(server)
    async with ada.events() as stream:
        started = time.monotonic()
        assert server.stop() == 0
        with pytest.raises((AssertionError, httpx.HTTPError)):
            await stream.next()  # the stream ends (or the connection with it)
    assert time.monotonic() - started < 5


async def test_last_event_id_resumes_with_no_gap_and_no_repeat(server: Server) -> None:
    ada = Account(server)
    token = server.register()
    ada.bind(token)
    async with ada.events(types="field.changed") as stream:
        for n in range(3):
            await ws_write(server, token, 100 if n == 0 else 101, name="n", value=n)
        seen = [await stream.next() for _ in range(3)]
    for n in range(3, 6):
        await ws_write(server, token, 101, name="n", value=n)
    async with ada.events(seen[1]["id"], types="field.changed") as stream:
        resumed = [await stream.next() for _ in range(4)]
        assert await marker(ada, stream) == []
    assert [e["data"]["value"] for e in resumed] == [2, 3, 4, 5]
    assert resumed[0] == seen[2]
    async with ada.events("0", types="field.changed", device=seen[0]["data"]["device"]) as again:
        assert [(await again.next())["data"]["value"] for _ in range(6)] == list(range(6))


async def test_the_filters_and_bad_parameters(server: Server) -> None:
    ada = Account(server)
    one, two = server.register(), server.register()
    ada.bind(one)
    ada.bind(two)
    async with ada.events("0", types="device.bound") as bound:
        devices = [_data(await bound.next())["device"] for _ in range(2)]
    async with ada.events(types="field.deleted,field.changed", device=devices[1]) as stream:
        await ws_write(server, one, 100, name="x", value=1)
        await ws_write(server, two, 100, name="y", value=2)
        await ws_write(server, two, 102, name="y")
        first, second = await stream.next(), await stream.next()
    assert [(e["type"], e["data"]["device"], e["data"]["name"]) for e in (first, second)] == [
        ("field.changed", devices[1], "y"), ("field.deleted", devices[1], "y")]
    async with httpx.AsyncClient(base_url=server.url) as http:
        auth = {"Authorization": f"Bearer {ada.key}"}
        for query, headers, named in (
                ({"types": "field.changed,rule.bogus"}, auth, "types"),
                ({"device": "ABC"}, auth, "device"),
                ({}, {**auth, "Last-Event-ID": "x1"}, "Last-Event-ID"),
                ({"after": "-5"}, auth, "after"),
                ({}, {}, "Authorization")):
            reply = await http.get("/api/v1/events", params=query, headers=headers)
            assert reply.status_code == (401 if not headers else 400), reply.text
            assert reply.headers["content-type"] == "application/problem+json"
            assert named in reply.json()["detail"]


async def test_another_account_and_an_unbound_device_make_no_event(server: Server) -> None:
    ada, bob = Account(server), Account(server)
    adas, loose = server.register(), server.register()
    ada.bind(adas)
    async with bob.events("0") as stream:
        await ws_write(server, adas, 100, name="secret", value=1)
        await ws_write(server, loose, 100, name="loose", value=1)
        assert await marker(bob, stream) == []
    async with ada.events() as stream:
        await ws_write(server, loose, 101, name="loose", value=2)  # no owner: no one to tell
        ada.bind(loose)
        before, bound = await stream.until("device.bound")
        assert before == [] and bound["data"]["device"] != ""
        assert await marker(ada, stream) == []


async def test_an_acknowledged_write_keeps_its_event_through_a_sigkill(own_server: Server) -> None:
    server = own_server.start()
    ada = Account(server)
    mac = random_mac()
    token = server.register(mac)
    ada.bind(token)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    for n in range(20):  # each acknowledged by a PUBACK after its commit; then the kill
        await client.publish(token, {"deviceToken": token, "body": {
            "requestType": 100 if n == 0 else 101, "name": "k", "value": n}}, 1, n + 1)
    acknowledged: list[int] = []
    while len(acknowledged) < 20:  # the answers (on the down topic) come between the PUBACKs
        packet = await client.recv()
        if isinstance(packet, mqtt.Puback):
            acknowledged.append(packet.packet_id)
    assert acknowledged == list(range(1, 21))
    assert own_server.process is not None
    own_server.process.send_signal(signal.SIGKILL)
    own_server.process.wait(10)
    await client.close()
    server.start()
    async with ada.events("0", types="field.changed") as stream:
        values = [(await stream.next())["data"]["value"] for _ in range(20)]
    assert values == list(range(20))


pg_problem = postgres_problem()


@pytest.mark.skipif(bool(pg_problem), reason=pg_problem or "-")
async def test_a_write_on_one_process_reaches_the_stream_of_another(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    url = postgres_database(data, CLUSTER_POSTGRES)
    one, two = (Server(data, extra_args=("--bus-url", redis.url),
                       env={"DEVICECLOUD_DATABASE_URL": url}).start() for _ in range(2))
    try:
        ada = Account(two)
        mac = random_mac()
        token = one.register(mac)
        ada.bind(token)
        async with ada.events(types="field.changed") as stream:
            client = await RawMqtt.device(one.mqtt_port, token, mac)
            started = time.monotonic()
            for n in range(5):
                await client.publish(token, {"deviceToken": token, "body": {
                    "requestType": 100 if n == 0 else 101, "name": "c", "value": n}}, 1, n + 1)
                while not isinstance(packet := await client.recv(), mqtt.Puback):
                    assert isinstance(packet, mqtt.Publish)  # the answer, on the down topic
                assert packet.packet_id == n + 1
            values = [(await stream.next())["data"]["value"] for _ in range(5)]
            took = time.monotonic() - started
            await client.close()
        assert values == list(range(5)) and took < 5
    finally:
        for process in (one, two):
            process.stop(signal.SIGKILL)
        redis.stop()



async def test_espai_binds_and_unbinds_are_events(server: Server) -> None:
    tenant = new_tenant(server)
    headers = {"Authorization": f"Bearer {tenant.open_api_key}"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http, \
            http.stream("GET", f"{server.url}/api/v1/events", headers=headers) as reply:
        stream = Stream(reply.aiter_lines())
        mac = random_mac()
        assert (await asyncio.to_thread(add_device, server, tenant, mac))["success"]
        bound = await stream.next()
        assert bound["type"] == "device.bound"
        device = _data(bound)["device"]
        unbound = await asyncio.to_thread(api, server, "/devices/del", [{"id": device}],
                                          tenant.open_api_key)
        assert unbound["success"], unbound
        released = await stream.next()
        assert (released["type"], released["data"]) == ("device.released", {"device": device})
        assert (await asyncio.to_thread(add_device, server, tenant, mac))["success"]
        assert (await stream.next())["type"] == "device.bound"
