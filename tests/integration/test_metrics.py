"""`GET /metrics` (operations spec section 3): each family moves when a real device acts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support.clients import WsDevice
from support.mqtt_clients import PahoDevice
from support.polling import eventually
from support.server import Server, random_mac

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server, token: str = "") -> Samples:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(f"{server.url}/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def refuse_a_registration(server: Server) -> None:
    """Register until the `ip.register` limit answers with its refusal."""
    for _ in range(10):
        body = httpx.post(f"{server.url}/api/v2/device/registerMac",
                          json={"deviceType": "basic", "mac": random_mac()}).json()
        if "rate limited" in str(body):
            return
    raise AssertionError("ip.register never refused")


async def test_each_metric_moves(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=("--limit", "ip.register=1/h:3")).start()
    try:
        mac = random_mac()
        token = server.register(mac=mac)
        before = scrape(server)
        assert value(before, "devicecloud_database_up") == 1
        assert value(before, "devicecloud_bus_up") == 1

        ws = await WsDevice.connect(server.ws_url, token)
        paho = await asyncio.to_thread(PahoDevice, server.mqtt_port, token, mac)
        live = scrape(server)
        assert value(live, "devicecloud_connections", transport="websocket") == 1
        assert value(live, "devicecloud_connections", transport="mqtt") == 1

        assert (await ws.request(100, name="t", value=1))["code"] == 200
        assert (await ws.request(101, name="missing", value=1))["code"] == 500
        assert (await asyncio.to_thread(paho.request, 101, name="t", value=2))["code"] == 200
        assert (await ws.recv_json())["cmd"] == 107  # the MQTT write, pushed to the WebSocket
        await asyncio.to_thread(refuse_a_registration, server)
        after = scrape(server)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("devicecloud_requests_total", transport="websocket", command="add",
                     result="ok") == 1
        assert moved("devicecloud_requests_total", transport="websocket", command="modify",
                     result="error") == 1
        assert moved("devicecloud_requests_total", transport="mqtt", command="modify",
                     result="ok") == 1
        assert moved("devicecloud_commit_batch_size_count") >= 2
        assert moved("devicecloud_commit_batch_size_sum") >= 2
        assert moved("devicecloud_commit_seconds_count") >= 2
        assert moved("devicecloud_commit_seconds_sum") > 0
        assert moved("devicecloud_push_seconds_count") >= 1
        assert moved("devicecloud_rate_limited_total", limit="ip.register") == 1

        await ws.close()
        await asyncio.to_thread(paho.close)
        eventually(lambda: value(scrape(server), "devicecloud_connections",
                                 transport="websocket") == 0 and
                   value(scrape(server), "devicecloud_connections", transport="mqtt") == 0,
                   "no live connection left")
    finally:
        assert server.stop() == 0, server.log()


def test_metrics_token(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=("--metrics-token", "s3cret-metrics")).start()
    try:
        refused = httpx.get(f"{server.url}/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"]
        wrong = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert value(scrape(server, "s3cret-metrics"), "devicecloud_database_up") == 1
    finally:
        assert server.stop() == 0, server.log()
