"""External broker mode: a real Mosquitto with the shipped configuration in front of devicecloud."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from support.mqtt_clients import PahoDevice, RawMqtt
from support.server import Server, random_mac
from support.services import Mosquitto, start_mosquitto

from devicecloud.protocols import mqtt

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None,
                                reason="Debian's mosquitto is not installed")


@pytest.fixture
def fronted(mosquitto: Mosquitto, own_server: Server) -> Server:
    own_server.extra_args = ("--mqtt-broker", mosquitto.broker_url)
    return own_server.start()


def test_device_speaks_ezdata_through_mosquitto(mosquitto: Mosquitto, fronted: Server) -> None:
    mac = random_mac()
    token = fronted.register(mac=mac)
    device = PahoDevice(mosquitto.device_port, token, mac)
    assert device.request(100, name="t", value=20)["body"]["name"] == "t"
    assert device.request(101, qos=1, name="t", value=21)["value"] == 21
    assert device.request(104, name="t")["body"]["value"] == 21
    httpx.post(f"{fronted.url}/api/v2/{token}/add", json={"name": "t", "value": 22})
    push = device.next()
    assert push["cmd"] == 107 and push["value"] == 22
    device.send(f"get({token},t)")
    assert device.next()["value"] == 22
    status = httpx.get(f"{fronted.url}/api/v1/devices/{token}/status").json()["data"]
    assert status["online"] is True and status["transports"] == ["mqtt"]
    device.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{fronted.url}/api/v1/devices/{token}/status").json()["data"]["online"]:
        assert time.monotonic() < deadline, "presence did not follow the disconnect"
        time.sleep(0.1)


async def test_a_device_cannot_read_or_write_another_tokens_topics(mosquitto: Mosquitto,
                                                                   fronted: Server) -> None:
    victim_mac, thief_mac = random_mac(), random_mac()
    victim_token, thief_token = fronted.register(mac=victim_mac), fronted.register(mac=thief_mac)
    victim = await RawMqtt.device(mosquitto.device_port, victim_token, victim_mac)
    thief = await RawMqtt.device(mosquitto.device_port, thief_token, thief_mac)
    await thief.send(mqtt.Subscribe(5, [(f"$ezdata/{victim_token}/down", 0), ("$ezdata/#", 0)]))
    await thief.recv()  # SUBACK: Mosquitto may grant it, but must deliver nothing
    await thief.publish(victim_token, {"deviceToken": victim_token,
                                       "body": {"requestType": 100, "name": "x", "value": 1}})
    async with httpx.AsyncClient() as http:
        await http.post(f"{fronted.url}/api/v2/{victim_token}/add",
                        json={"name": "secret", "value": "for the victim only"})
        push = await victim.recv_json()
        assert push["body"]["name"] == "secret"
        await thief.assert_pong_next(thief_token)  # the victim's push did not reach it
        rows = (await http.get(f"{fronted.url}/api/v2/{victim_token}/list")).json()["data"]
    assert [row["name"] for row in rows["rows"]] == ["secret"]
    await victim.close()
    await thief.close()


async def test_each_up_message_is_handled_once_by_several_instances(
        mosquitto: Mosquitto, fronted: Server, tmp_path: Path) -> None:
    # Mosquitto 2.0 cannot share $ezdata subscriptions: the instances split the devices instead.
    fronted.stop()
    fronted.extra_args += ("--mqtt-partition", "0/2")
    fronted.start()
    second = Server(fronted.data_dir, extra_args=("--mqtt-broker", mosquitto.broker_url,
                                                  "--mqtt-partition", "1/2"))
    second.start()
    try:
        mac = random_mac()
        token = fronted.register(mac=mac)
        client = await RawMqtt.device(mosquitto.device_port, token, mac)
        for i in range(200):
            await client.publish(token, {"deviceToken": token, "body": {
                "requestType": 100, "name": f"n{i}", "value": i}}, qos=1, packet_id=i + 1)
        replies, acks = [], 0
        while len(replies) < 200 or acks < 200:
            packet = await client.recv(timeout=5)
            if isinstance(packet, mqtt.Puback):
                acks += 1
            else:
                assert isinstance(packet, mqtt.Publish)
                replies.append(packet)
        await client.assert_pong_next(token)  # no message was answered twice
        async with httpx.AsyncClient() as http:
            rows = (await http.get(f"{fronted.url}/api/v2/{token}/list")).json()["data"]["rows"]
        assert sorted(row["name"] for row in rows) == sorted(f"n{i}" for i in range(200))
        await client.close()
    finally:
        assert second.stop() == 0


async def test_the_bridge_reconnects_after_a_broker_restart(mosquitto: Mosquitto,
                                                            fronted: Server,
                                                            tmp_path: Path) -> None:
    mac = random_mac()
    token = fronted.register(mac=mac)
    mosquitto.process.terminate()
    mosquitto.process.wait(10)
    restarted = start_mosquitto(tmp_path / "mosquitto", mosquitto.device_port,
                                mosquitto.service_port)
    mosquitto.process = restarted.process
    deadline = time.monotonic() + 15
    while True:
        client = await RawMqtt.device(mosquitto.device_port, token, mac)
        await client.publish(token, {"deviceToken": token, "body": "ping"})
        try:
            assert (await client.recv(timeout=1)).payload == b"pong"  # type: ignore[union-attr]
            break
        except TimeoutError:
            assert time.monotonic() < deadline, "devicecloud did not come back to the broker"
        finally:
            await client.close()
        await asyncio.sleep(0.2)


def test_emqx_http_auth_and_acl_hooks(fronted: Server) -> None:
    mac = random_mac()
    token = fronted.register(mac=mac)
    auth, acl = f"{fronted.url}/mqtt/auth", f"{fronted.url}/mqtt/acl"

    def verdict(url: str, **body: str) -> str:
        result: str = httpx.post(url, json=body).json()["result"]
        return result

    assert verdict(auth, username=token, clientid=f"ez{mac.lower()}ez", password="") == "allow"
    assert verdict(auth, username=token, clientid=f"M5{mac}M5", password="") == "allow"
    assert verdict(auth, username=token, clientid="ez000000000000ez", password="") == "deny"
    assert verdict(auth, username=token, clientid=f"ez{mac}ez", password="x") == "deny"
    assert verdict(auth, username="f" * 32, clientid=f"ez{mac}ez", password="") == "deny"
    assert verdict(acl, username=token, topic=f"$ezdata/{token}/up", action="publish") == "allow"
    assert verdict(acl, username=token, topic=f"$ezdata/{token}/down",
                   action="subscribe") == "allow"
    assert verdict(acl, username=token, topic=f"$ezdata/{token}/down", action="publish") == "deny"
    assert verdict(acl, username=token, topic="$ezdata/+/down", action="subscribe") == "deny"
    assert httpx.post(auth, content=b"not json").json()["result"] == "deny"


def test_mosquitto_clients_through_the_broker(mosquitto: Mosquitto, fronted: Server) -> None:
    mac = random_mac()
    token = fronted.register(mac=mac)
    port = str(mosquitto.device_port)
    sub = subprocess.Popen(["mosquitto_sub", "-p", port, "-i", f"ez{mac}ez", "-u", token,
                            "-t", f"$ezdata/{token}/down", "-C", "1", "-W", "10"],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    subprocess.run(["mosquitto_pub", "-p", port, "-i", f"m5{mac}m5", "-u", token, "-t",
                    f"$ezdata/{token}/up", "-q", "1", "-m",
                    f"set({token},relay,{{\"on\":true,\"lastModifiedBy\":\"cli\"}},dict)"],
                   check=True, timeout=10)
    out, _ = sub.communicate(timeout=15)
    reply = json.loads(out)
    # The set's answer and its push travel on the same down topic; either shows the value.
    assert reply["code"] == 200 and reply["value"] == {"on": True, "lastModifiedBy": "cli"}
    stored = httpx.get(f"{fronted.url}/api/v2/{token}/dataByKey/relay").json()["data"]
    assert stored["value"]["on"] is True
