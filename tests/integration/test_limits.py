"""Limits against real servers (operations spec section 2): each protocol's refusal names the
limit and when to retry and changes nothing, MQTT CONNECT gets CONNACK 3, connections per
address are capped, a device's fields are capped, refusals are counted in the metrics, and two
processes on one PostgreSQL and one Redis hold a limit together, not once each."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.clients import WsDevice
from support.espai import new_tenant
from support.mqtt_clients import RawMqtt, client_id
from support.polling import eventually
from support.server import (
    CLUSTER_POSTGRES,
    Server,
    postgres_database,
    postgres_problem,
    random_mac,
)
from support.services import PrivateRedis
from websockets.exceptions import InvalidStatus

from devicecloud.protocols import mqtt

MESSAGES = re.compile(r"rate limited: device\.messages 5/s, retry in \d+\.\d s")
LIMITED = ("--limit", "device.messages=5/s:5", "--limit", "account.api=1/min:2",
           "--limit", "device.fields=3")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with small per-device and per-account limits (each test uses its own device or
    account, so they do not meet)."""
    instance = Server(tmp_path_factory.mktemp("limited") / "data", extra_args=LIMITED).start()
    yield instance
    assert instance.stop() == 0, instance.log()


def patiently(attempt: Callable[[], Any], timeout: float = 5.0) -> Any:
    """`attempt()`'s answer once it is not a rate limit's refusal."""
    return eventually(lambda: None if "rate limited" in json.dumps(answer := attempt())
                      else answer, "an answer within the limit", timeout)


async def test_websocket_requests_over_the_limit_are_answered_in_turn(limited: Server) -> None:
    token = limited.register()
    device = await WsDevice.connect(limited.ws_url, token)
    assert (await device.request(100, name="f", value=1))["code"] == 200
    # Seven at once: four more within the burst of 5, then refusals, each in its turn.
    for n in range(7):
        await device.send({"deviceToken": token, "body": {"requestType": 101, "name": "f",
                                                          "value": 10 + n}})
    answers = [await device.recv_json() for _ in range(7)]
    assert [a["code"] for a in answers] == [200] * 4 + [500] * 3, answers
    assert [a["cmd"] for a in answers] == [101] * 7
    assert all(MESSAGES.fullmatch(a["msg"]) for a in answers[4:]), answers
    assert answers[3]["body"]["value"] == 13
    await device.close()
    samples = {(s.name, s.labels.get("transport"), s.labels.get("command"),
                s.labels.get("result")): s.value
               for family in text_string_to_metric_families(
                   httpx.get(f"{limited.url}/metrics").text) for s in family.samples}
    assert samples["devicecloud_requests_total", "websocket", "modify", "error"] >= 3
    # Nothing changed by the refused ones.
    read = await asyncio.to_thread(
        patiently, lambda: httpx.get(f"{limited.url}/api/v2/{token}/dataByKey/f").json())
    assert read["data"]["value"] == 13, read


async def test_mqtt_publishes_over_the_limit_are_acknowledged_and_answered(
        limited: Server) -> None:
    mac = random_mac()
    token = limited.register(mac=mac)
    device = await RawMqtt.device(limited.mqtt_port, token, mac)
    for n in range(7):
        await device.publish(token, {"deviceToken": token, "body": {
            "requestType": 100 if n == 0 else 101, "name": "m", "value": n}}, qos=1,
            packet_id=n + 1)
    packets = [await device.recv() for _ in range(14)]
    acks = [p.packet_id for p in packets if isinstance(p, mqtt.Puback)]
    answers = [json.loads(p.payload) for p in packets if isinstance(p, mqtt.Publish)]
    assert acks == list(range(1, 8)), packets  # answered, never dropped
    assert [a["code"] for a in answers] == [200] * 5 + [500] * 2, answers
    assert [a["cmd"] for a in answers] == [100] + [101] * 6
    assert all(MESSAGES.fullmatch(a["msg"]) for a in answers[5:]), answers
    await device.close()
    listed = await asyncio.to_thread(
        patiently, lambda: httpx.get(f"{limited.url}/api/v2/{token}/dataByKey/m").json())
    assert listed["data"]["value"] == 4, listed


def test_http_requests_over_the_limit_get_429_and_change_nothing(limited: Server) -> None:
    token = limited.register()
    add = f"{limited.url}/api/v2/{token}/add"
    assert httpx.post(add, json={"name": "h", "value": 1}).json()["code"] == 200
    with httpx.Client() as client:  # until the first refusal: the burst, and what refilled
        replies = []
        while len(replies) < 30 and (not replies or replies[-1].status_code == 200):
            replies.append(client.post(add, json={"name": "h", "value": 2 + len(replies)}))
    refused = replies[-1]
    assert refused.status_code == 429 and len(replies) >= 5, [r.text for r in replies]
    assert int(refused.headers["retry-after"]) >= 1
    body = refused.json()
    assert body["code"] == 500 and MESSAGES.fullmatch(body["msg"]) and body["data"] is None
    read = patiently(lambda: httpx.get(f"{limited.url}/api/v2/{token}/dataByKey/h").json())
    assert read["data"]["value"] == len(replies), read  # the last one accepted, not the refused


def test_espai_api_over_the_limit_gets_429_with_its_envelope(limited: Server) -> None:
    tenant = new_tenant(limited)

    def call() -> httpx.Response:
        return httpx.post(f"{limited.url}/devices/list", json={},
                          headers={"authorization": tenant.open_api_key})

    assert [call().status_code for _ in range(2)] == [200, 200]
    refused = call()
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert body["success"] is False and body["code"] == 429
    assert re.fullmatch(r"rate limited: account\.api 1/min, retry in \d+\.\d s", body["message"])
    other = new_tenant(limited)  # per account: another is not held by it
    assert httpx.post(f"{limited.url}/devices/list", json={},
                      headers={"authorization": other.open_api_key}).status_code == 200


async def test_a_device_holds_at_most_its_fields_and_one_more_changes_nothing(
        limited: Server) -> None:
    token = limited.register()
    device = await WsDevice.connect(limited.ws_url, token)
    for name in ("a", "b", "c"):
        assert (await device.request(100, name=name, value=1))["code"] == 200
    refused = await device.request(100, name="d", value=1)
    assert refused["code"] == 500 and refused["cmd"] == 100, refused
    assert refused["msg"].startswith("limit reached: device.fields 3"), refused
    await device.close()
    rest = patiently(lambda: (reply := httpx.post(f"{limited.url}/api/v2/{token}/add",
                                                  json={"name": "e", "value": 1}),
                              reply.status_code, reply.json())[1:])
    assert rest[0] == 200, rest  # a full device is not a rate: no 429
    assert rest[1]["code"] == 500 and rest[1]["msg"].startswith("limit reached: device.fields 3")
    fields = patiently(lambda: httpx.get(f"{limited.url}/api/v2/{token}/list").json())
    assert sorted(f["name"] for f in fields["data"]["rows"]) == ["a", "b", "c"], fields


def test_refusals_are_counted_by_limit_name(limited: Server) -> None:
    token, full = limited.register(), limited.register()
    for _ in range(8):
        httpx.get(f"{limited.url}/api/v2/{token}/list")
    added = [httpx.post(f"{limited.url}/api/v2/{full}/add", json={"name": name, "value": 1})
             .json()["code"] for name in "abcd"]
    assert added == [200, 200, 200, 500], added
    metrics = httpx.get(f"{limited.url}/metrics").text
    counted = re.search(r'devicecloud_rate_limited_total\{limit="device.messages"\} (\S+)',
                        metrics)
    assert counted is not None and float(counted.group(1)) >= 1, metrics
    full = re.search(r'devicecloud_rate_limited_total\{limit="device.fields"\} (\S+)', metrics)
    assert full is not None and float(full.group(1)) >= 1, metrics
    assert "device id" in limited.log() and "refused: rate limited: device.messages" in \
        limited.log()


# Connections per address ---------------------------------------------------------------------

async def test_open_connections_are_capped_per_address(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=("--limit", "ip.connections=2")).start()
    try:
        macs = [random_mac() for _ in range(3)]
        tokens = [await asyncio.to_thread(server.register, mac) for mac in macs]
        held = [await RawMqtt.device(server.mqtt_port, tokens[n], macs[n]) for n in range(2)]
        third = await RawMqtt.open(server.mqtt_port)
        await third.send(third.session.connect(mqtt.Connect(
            client_id=client_id(macs[2]), username=tokens[2])))
        assert await third.recv() == mqtt.Connack(False, 3)
        assert await third.closed_within(3)
        refused = await asyncio.to_thread(httpx.get, f"{server.url}/healthz")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"].startswith("limit reached: ip.connections 2")
        with pytest.raises(InvalidStatus) as upgrade:
            await WsDevice.connect(server.ws_url, tokens[2])
        assert upgrade.value.response.status_code == 429
        await held[0].close()
        # Once one closes, a new one is let in.
        connected = await asyncio.wait_for(_connect_when_allowed(server, tokens[2], macs[2]), 5)
        await connected.assert_pong_next(tokens[2])
        for client in (connected, held[1]):
            await client.close()
    finally:
        assert server.stop() == 0, server.log()


async def _connect_when_allowed(server: Server, token: str, mac: str) -> RawMqtt:
    while True:
        client = await RawMqtt.open(server.mqtt_port)
        await client.send(client.session.connect(mqtt.Connect(client_id=client_id(mac),
                                                              username=token)))
        if await client.recv() == mqtt.Connack(False, 0):
            packet_id, data = client.session.subscribe([(f"$ezdata/{token}/down", 0)])
            await client.send(data)
            assert await client.recv() == mqtt.Suback(packet_id, [0])
            return client
        await client.close()
        await asyncio.sleep(0.05)


async def test_new_connections_over_the_rate_are_refused_on_every_transport(
        tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=("--limit", "ip.connects=1/min:30")).start()
    try:
        mac = random_mac()
        token = await asyncio.to_thread(server.register, mac)
        for _ in range(40):  # each a new connection
            reply = await asyncio.to_thread(httpx.get, f"{server.url}/healthz")
            if reply.status_code == 429:
                break
        assert reply.status_code == 429, reply.text
        assert 1 <= int(reply.headers["retry-after"]) <= 60
        problem = reply.json()
        assert problem["status"] == 429 and problem["title"] == "Too many requests"
        assert re.fullmatch(r"rate limited: ip\.connects 1/min, retry in \d+\.\d s",
                            problem["detail"]), problem
        client = await RawMqtt.open(server.mqtt_port)
        await client.send(client.session.connect(mqtt.Connect(client_id=client_id(mac),
                                                              username=token)))
        assert await client.recv() == mqtt.Connack(False, 3)
        assert await client.closed_within(3)
    finally:
        assert server.stop() == 0, server.log()


# Across processes ----------------------------------------------------------------------------

@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[Server]]:
    if problem := postgres_problem(CLUSTER_POSTGRES):
        pytest.skip(problem)
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    url = postgres_database(data, CLUSTER_POSTGRES)
    limits = ("--limit", "device.messages=1/min:6", "--limit", "ip.register=1/min:4",
              "--limit", "ip.connections=3")
    servers = [Server(data, extra_args=("--bus-url", redis.url, *limits),
                      env={"DEVICECLOUD_DATABASE_URL": url}).start() for _ in range(2)]
    yield servers
    for server in servers:
        assert server.stop() == 0, server.log()
    redis.stop()


def test_two_processes_hold_one_limit_together(pair: list[Server]) -> None:
    token = pair[0].register()  # the first of 4 registrations
    answers = [httpx.get(f"{pair[n % 2].url}/api/v2/{token}/list") for n in range(10)]
    assert [a.status_code for a in answers].count(200) == 6, [a.text for a in answers]
    assert all("device.messages 1/min" in a.json()["msg"] for a in answers if a.status_code != 200)
    registered = []
    for n in range(6):
        body = httpx.post(f"{pair[n % 2].url}/api/v2/device/registerMac",
                          json={"deviceType": "basic", "mac": random_mac()})
        registered.append(body.status_code)
    assert registered == [200, 200, 200, 429, 429, 429], registered


async def test_requests_waiting_for_a_lease_keep_their_order(pair: list[Server]) -> None:
    token = await asyncio.to_thread(pair[0].register)
    device = await WsDevice.connect(pair[0].ws_url, token)
    # Each request's token is leased from Redis (1/min: a lease of one), so every one waits for
    # a round trip while those behind it wait in order.
    await device.send({"deviceToken": token, "body": {"requestType": 100, "name": "o",
                                                      "value": 0}})
    for n in range(1, 9):
        await device.send({"deviceToken": token, "body": {"requestType": 101, "name": "o",
                                                          "value": n}})
    answers = [await device.recv_json() for _ in range(9)]
    assert [a["code"] for a in answers] == [200] * 6 + [500] * 3, answers
    assert [a["body"]["value"] for a in answers[:6]] == list(range(6)), answers
    assert [a["cmd"] for a in answers] == [100] + [101] * 8
    await device.close()
    other = await WsDevice.connect(pair[1].ws_url, token)  # the other process: spent there too
    refused = await other.request(104, name="o")
    assert refused["code"] == 500 and "device.messages 1/min" in refused["msg"], refused
    await other.close()


async def test_open_connections_are_capped_across_processes(pair: list[Server]) -> None:
    macs = [random_mac() for _ in range(4)]
    tokens = [await asyncio.to_thread(pair[0].register, mac) for mac in macs]
    held = [await RawMqtt.device(pair[n % 2].mqtt_port, tokens[n], macs[n]) for n in range(3)]
    fourth = await RawMqtt.open(pair[1].mqtt_port)
    await fourth.send(fourth.session.connect(mqtt.Connect(client_id=client_id(macs[3]),
                                                          username=tokens[3])))
    assert await fourth.recv() == mqtt.Connack(False, 3)  # two on one process, one on the other
    await held[0].close()  # on the first process: the second may let one in now
    connected = await asyncio.wait_for(_connect_when_allowed(pair[1], tokens[3], macs[3]), 5)
    await connected.assert_pong_next(tokens[3])
    for client in (connected, *held[1:]):
        await client.close()
