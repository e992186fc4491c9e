"""The built-in MQTT listener (spec section 3): real clients over real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time

import httpx
import pytest
from support.clients import WsDevice
from support.mqtt_clients import PahoDevice, RawMqtt, client_id
from support.server import Server, random_mac

from devicecloud.protocols import mqtt


def device(server: Server) -> tuple[str, str]:
    mac = random_mac()
    return server.register(mac=mac), mac


# Connect -------------------------------------------------------------------------------------

def test_paho_device_crud_with_value_on_top(server: Server) -> None:
    token, mac = device(server)
    paho = PahoDevice(server.mqtt_port, token, mac)
    added = paho.request(100, name="relay", value={"on": True})
    assert added["cmd"] == 100 and added["code"] == 200
    assert added["body"] == {"deviceToken": token, "name": "relay", "value": {"on": True}}
    assert added["value"] == {"on": True}
    assert paho.request(101, name="relay", value={"on": False})["value"] == {"on": False}
    record = paho.request(104, name="relay")
    assert record["body"]["dataType"] == "dict" and record["value"] == {"on": False}
    assert [r["name"] for r in paho.request(103)["body"]] == ["relay"]
    assert paho.request(102, name="relay")["cmd"] == 102
    error = paho.request(101, name="relay", value=1)
    assert error["code"] == 500 and error["cmd"] == 101 and error["data"] is None
    paho.send({"deviceToken": token, "body": "ping"})
    assert paho.next() == {"text": "pong"}
    paho.close()


async def test_m5_client_id_upper_case_mac_and_persistent_session_flag(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.open(server.mqtt_port)
    await client.send(mqtt.Connect(client_id=client_id(mac.upper(), "m5"), username=token,
                                   clean_session=False, password=b""))
    assert await client.recv() == mqtt.Connack(False, 0)
    await client.close()


async def test_mqtt_3_1_protocol_name(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.open(server.mqtt_port)
    await client.send(mqtt.Connect("MQIsdp", 3, client_id(mac), username=token))
    assert await client.recv() == mqtt.Connack(False, 0)
    await client.close()


@pytest.mark.parametrize(("change", "code"), [
    ({"username": "0" * 32}, 5),
    ({"username": "not-a-token"}, 5),
    ({"username": None}, 4),
    ({"password": b"secret"}, 4),
    ({"client_id": "ez000000000000ez"}, 2),
    ({"client_id": "somebody"}, 2),
    ({"protocol_level": 5}, 1),
])
async def test_refused_connections_get_the_right_connack(server: Server, change: dict[str, object],
                                                         code: int) -> None:
    token, mac = device(server)
    fields: dict[str, object] = {"client_id": client_id(mac), "username": token, **change}
    client = await RawMqtt.open(server.mqtt_port)
    await client.send(mqtt.Connect(**fields))  # type: ignore[arg-type]
    assert await client.recv() == mqtt.Connack(False, code)
    assert await client.closed_within(2)


async def test_connect_must_arrive_within_ten_seconds(server: Server) -> None:
    client = await RawMqtt.open(server.mqtt_port)
    started = time.monotonic()
    assert await client.closed_within(13)
    assert 9 < time.monotonic() - started < 12.5


async def test_keepalive_is_enforced_at_one_and_a_half_times(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac, keepalive=2)
    started = time.monotonic()
    assert not await client.closed_within(2.5)  # 2.5 s < 3 s: still open
    assert await client.closed_within(2)
    assert 2.9 < time.monotonic() - started < 4.6
    pinging = await RawMqtt.device(server.mqtt_port, token, mac, keepalive=1)
    for _ in range(4):
        await pinging.send(mqtt.Pingreq())
        assert await pinging.recv() == mqtt.Pingresp()
        await asyncio.sleep(0.9)
    await pinging.close()


async def test_same_client_id_takes_over(server: Server) -> None:
    token, mac = device(server)
    first = await RawMqtt.device(server.mqtt_port, token, mac)
    second = await RawMqtt.device(server.mqtt_port, token, mac)
    assert await first.closed_within(2)
    await second.publish(token, {"deviceToken": token, "body": "ping"})
    assert (await second.recv()).payload == b"pong"  # type: ignore[union-attr]
    await second.close()


# Topics --------------------------------------------------------------------------------------

async def test_only_the_own_down_topic_can_be_subscribed(server: Server) -> None:
    token, mac = device(server)
    other, _ = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac, subscribe=False)
    await client.send(mqtt.Subscribe(7, [(f"$ezdata/{token}/down", 1), (f"$ezdata/{other}/down", 0),
                                         ("$ezdata/+/down", 0), ("#", 0)]))
    assert await client.recv() == mqtt.Suback(7, [0, 0x80, 0x80, 0x80])
    await client.send(mqtt.Unsubscribe(8, [f"$ezdata/{token}/down"]))
    assert await client.recv() == mqtt.Unsuback(8)
    await client.close()


@pytest.mark.parametrize("topic", ["$ezdata/OTHER/up", "$ezdata/TOKEN/down", "other/topic"])
async def test_publishing_elsewhere_closes_the_connection(server: Server, topic: str) -> None:
    token, mac = device(server)
    other, _ = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    name = topic.replace("OTHER", other).replace("TOKEN", token)
    await client.send(mqtt.Publish(name, b'{"body":"ping"}'))
    assert await client.closed_within(2)


# QoS -----------------------------------------------------------------------------------------

async def test_qos1_puback_comes_after_the_commit(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    await client.publish(token, {"deviceToken": token,
                                 "body": {"requestType": 100, "name": "q1", "value": 1}}, 1, 11)
    assert await client.recv() == mqtt.Puback(11)
    async with httpx.AsyncClient() as http:
        stored = (await http.get(f"{server.url}/api/v2/{token}/dataByKey/q1")).json()
    assert stored["data"]["value"] == 1
    assert (await client.recv_json())["cmd"] == 100
    await client.close()


async def test_qos2_flow_and_a_resent_message_is_carried_out_once(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    request = {"deviceToken": token, "body": {"requestType": 100, "name": "q2", "value": 2}}
    message = mqtt.Publish(f"$ezdata/{token}/up", json.dumps(request).encode(), 2, packet_id=21)
    await client.send(message)  # past the session: this test answers PUBREC itself
    assert await client.recv() == mqtt.Pubrec(21)
    assert (await client.recv_json())["body"]["name"] == "q2"
    await client.send(dataclasses.replace(message, dup=True))
    assert await client.recv() == mqtt.Pubrec(21)
    await client.send(mqtt.Pubrel(21))
    assert await client.recv() == mqtt.Pubcomp(21)
    async with httpx.AsyncClient() as http:
        rows = (await http.get(f"{server.url}/api/v2/{token}/list")).json()["data"]["rows"]
    assert [row["name"] for row in rows] == ["q2"]
    await client.close()


async def test_retained_publish_is_handled_but_never_retained(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    await client.publish(token, {"deviceToken": token, "body": "ping"}, retain=True)
    assert (await client.recv()).payload == b"pong"  # type: ignore[union-attr]
    await client.close()
    again = await RawMqtt.device(server.mqtt_port, token, mac)
    await again.assert_pong_next(token)  # no retained message came first
    await again.close()


async def test_will_is_never_published(server: Server) -> None:
    token, mac = device(server)
    watcher = await RawMqtt.device(server.mqtt_port, token, mac, style="m5")
    client = await RawMqtt.open(server.mqtt_port)
    await client.send(mqtt.Connect(client_id=client_id(mac), username=token, will=mqtt.Will(
        f"$ezdata/{token}/down", b"gone")))
    assert await client.recv() == mqtt.Connack(False, 0)
    client.writer.transport.abort()
    # A new connection with its client id: the aborted one is over, seen closed or taken over.
    successor = await RawMqtt.device(server.mqtt_port, token, mac, subscribe=False)
    await watcher.assert_pong_next(token)  # no will came first
    await watcher.close()
    await successor.close()


# Malformed input -----------------------------------------------------------------------------

MALFORMED = {
    "reserved type 0": b"\x00\x00",
    "reserved type 15": b"\xf0\x00",
    "bad flags": b"\xc1\x00",
    "qos 3": b"\x36\x05\x00\x01a\x00\x01",
    "5-byte length": b"\x30\xff\xff\xff\xff\x01",
    "subscribe flags": b"\x80\x06\x00\x01\x00\x01a\x00",
    "bad utf-8 topic": b"\x30\x04\x00\x02\xff\xfe",
    "wildcard topic": b"\x30\x05\x00\x03a/#",
    "second connect": mqtt.encode(mqtt.Connect(client_id="x")),
    "connack from a client": b"\x20\x02\x00\x00",
    "too large": b"\x30\xff\xff\x7f",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_packets_close_only_the_offending_connection(server: Server,
                                                                     data: bytes) -> None:
    token, mac = device(server)
    bystander_token, bystander_mac = device(server)
    bystander = await RawMqtt.device(server.mqtt_port, bystander_token, bystander_mac)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    await client.send(data)
    assert await client.closed_within(2)
    await bystander.publish(bystander_token, {"deviceToken": bystander_token, "body": "ping"})
    assert (await bystander.recv()).payload == b"pong"  # type: ignore[union-attr]
    await bystander.close()


async def test_garbage_before_connect_closes(server: Server) -> None:
    client = await RawMqtt.open(server.mqtt_port)
    await client.send(b"GET / HTTP/1.1\r\n\r\n")
    assert await client.closed_within(2)


async def test_bad_ezdata_payloads_get_errors_on_the_down_topic(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    for payload in (b"{oops", b"[]", b'{"body": {"requestType": 42}}', b"\xff\xfe",
                    b"get(only-one-arg)", f"set({token},k,{{bad json,dict)".encode()):
        await client.publish(token, payload)
        reply = await client.recv_json()
        assert reply["code"] == 500 and reply["msg"]
    await client.publish(token, {"deviceToken": token, "body": "ping"})
    assert (await client.recv()).payload == b"pong"  # type: ignore[union-attr]
    await client.close()


# EzData over MQTT ----------------------------------------------------------------------------

def test_stamplc_text_commands_with_mosquitto_clients(server: Server) -> None:
    token, mac = device(server)
    topic = f"$ezdata/{token}/down"
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(server.mqtt_port), "-i",
                            client_id(mac, "m5"), "-u", token, "-t", topic, "-C", "2", "-W", "10"],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    value = '{"relay":true,"statusLight":"red","lastModifiedBy":"stamplc"}'
    for command in (f"set({token},state,{value},dict)", f"get({token},state)"):
        subprocess.run(["mosquitto_pub", "-p", str(server.mqtt_port), "-i", client_id(mac),
                        "-u", token, "-t", f"$ezdata/{token}/up", "-m", command], check=True,
                       timeout=10)
    out, _ = sub.communicate(timeout=15)
    # mosquitto_pub's connection shares the device's token: sub sees the set as a push (109),
    # then the get's answer reaches only the publisher; so look for the push.
    pushes = [json.loads(line) for line in out.splitlines()]
    assert pushes[0]["cmd"] == 109
    assert pushes[0]["value"] == {"relay": True, "statusLight": "red", "lastModifiedBy": "stamplc"}
    assert httpx.get(f"{server.url}/api/v2/{token}/dataByKey/state").json()["data"]["value"][
        "relay"] is True


async def test_stamplc_get_and_set_answers(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac, style="m5")
    await client.publish(token, f'set({token},state,{{"relay":1,"a":[1,2]}},dict)'.encode())
    answer = await client.recv_json()
    assert answer["code"] == 200 and answer["value"] == {"relay": 1, "a": [1, 2]}
    await client.publish(token, f"get({token},state)".encode())
    answer = await client.recv_json()
    assert answer["cmd"] == 104 and answer["value"] == {"relay": 1, "a": [1, 2]}
    await client.close()


async def test_pushes_reach_mqtt_devices_from_every_channel(server: Server) -> None:
    token, mac = device(server)
    first = await RawMqtt.device(server.mqtt_port, token, mac, style="ez")
    second = await RawMqtt.device(server.mqtt_port, token, mac, style="m5")
    ws = await WsDevice.connect(server.ws_url, token)
    async with httpx.AsyncClient() as http:
        await http.post(f"{server.url}/api/v2/{token}/add", json={"name": "a", "value": 1})
        for client in (first, second):
            push = await client.recv_json()
            assert push["cmd"] == 109 and push["value"] == 1
        assert (await ws.recv_json())["cmd"] == 109
        await ws.request(103)
        await ws.request(101, name="a", value=2)
        for client in (first, second):
            push = await client.recv_json()
            assert push["cmd"] == 107 and push["value"] == 2 and push["body"]["value"] == 2
        await first.publish(token, {"deviceToken": token,
                                    "body": {"requestType": 101, "name": "a", "value": 3}})
        assert (await first.recv_json())["cmd"] == 101
        assert (await second.recv_json())["value"] == 3
        assert (await ws.recv_json())["body"]["value"] == 3
        await ws.request(103)
        files = {"file": ("p.png", b"\x89PNG data", "image/png")}
        await http.post(f"{server.url}/api/v2/device/uploadDeviceFile",
                        data={"deviceToken": token, "name": "pic"}, files=files)
        push = await first.recv_json()
        assert push["cmd"] == 105 and push["body"]["value"].endswith("/p.png")
        await http.delete(f"{server.url}/api/v2/{token}/delete/a")
        # `second` has not read the upload's push yet: it comes first, then the deletion's.
        assert (await second.recv_json())["cmd"] == 105
        for client in (first, second):
            deleted = await client.recv_json()
            assert deleted["cmd"] == 108 and deleted["body"]["name"] == "a"
    for client in (first, second):
        await client.close()
    await ws.close()


async def test_4kb_downlink_limit_refuses_the_cause(server: Server) -> None:
    token, mac = device(server)
    client = await RawMqtt.device(server.mqtt_port, token, mac)
    async with httpx.AsyncClient() as http:
        big = await http.post(f"{server.url}/api/v2/{token}/add",
                              json={"name": "big", "value": "x" * 3000})
        assert big.json()["code"] == 500 and "4096-byte" in big.json()["msg"]
        small = await http.post(f"{server.url}/api/v2/{token}/add",
                                json={"name": "small", "value": "x" * 1500})
        assert small.json()["code"] == 200
        push = await client.recv_json()
        assert push["cmd"] == 109 and push["value"] == "x" * 1500
        rows = (await http.get(f"{server.url}/api/v2/{token}/list")).json()["data"]["rows"]
        assert [row["name"] for row in rows] == ["small"]
    for i in range(3):
        body = {"requestType": 100, "name": f"s{i}", "value": "y" * 1500}
        await client.publish(token, {"deviceToken": token, "body": body})
        assert (await client.recv_json())["code"] == 200
    await client.publish(token, {"deviceToken": token, "body": {"requestType": 103}})
    listed = await client.recv_json()
    assert listed["code"] == 500 and "4096-byte" in listed["msg"]
    await client.close()


# Presence ------------------------------------------------------------------------------------

async def _status(server: Server, token: str) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{server.url}/api/v1/devices/{token}/status")).json()
    data: dict[str, object] = doc["data"]
    return data


async def test_presence_follows_connect_disconnect_and_keepalive(server: Server) -> None:
    token, mac = device(server)
    assert (await _status(server, token))["online"] is False
    before = time.time() * 1000
    client = await RawMqtt.device(server.mqtt_port, token, mac, keepalive=1)
    status = await _status(server, token)
    assert status["online"] is True and status["transports"] == ["mqtt"]
    assert isinstance(status["lastSeen"], int) and status["lastSeen"] >= before - 5
    ws = await WsDevice.connect(server.ws_url, token)
    assert (await _status(server, token))["transports"] == ["mqtt", "websocket"]
    await ws.close()
    await asyncio.sleep(0.2)
    assert (await _status(server, token))["transports"] == ["mqtt"]
    # Silence: the keepalive (1 s, enforced at 1.5 s) expires and the device goes offline.
    assert await client.closed_within(3)
    await asyncio.sleep(0.2)
    status = await _status(server, token)
    assert status["online"] is False and isinstance(status["lastSeen"], int)
    assert status["lastSeen"] >= before
    polite = await RawMqtt.device(server.mqtt_port, token, mac)
    assert (await _status(server, token))["online"] is True
    await polite.send(mqtt.Disconnect())
    assert await polite.closed_within(2)
    await asyncio.sleep(0.2)
    assert (await _status(server, token))["online"] is False
