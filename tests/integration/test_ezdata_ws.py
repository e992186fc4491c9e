"""EzData over WebSocket (spec sections 2 and 4), through a real socket to a real server."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from support.clients import WsDevice
from support.server import Server
from websockets.exceptions import ConnectionClosed


async def test_login_ping_and_repeated_login(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    await device.send({"deviceToken": token, "body": "ping"})
    assert await device.recv() == "pong"
    await device.send({"deviceToken": token})
    assert await device.recv() == "device Login successful"
    await device.close()


async def test_login_is_answered_within_a_second(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token, login=False)
    started = time.monotonic()
    await device.send(f'{{"deviceToken": "{token}"}}')
    assert await device.recv(timeout=1.0) == "device Login successful"
    assert time.monotonic() - started < 1.0
    await device.close()


async def test_add_modify_read_list_delete(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    added = await device.request(100, name="temp", value=21.5)
    assert added == {"body": {"deviceToken": token, "name": "temp", "value": 21.5},
                     "cmd": 100, "code": 200, "msg": "OK"}
    modified = await device.request(101, name="temp", value=22)
    assert modified["cmd"] == 101 and modified["body"]["value"] == 22
    record = (await device.request(104, name="temp"))["body"]
    assert record["name"] == "temp" and record["value"] == 22 and record["dataType"] == "number"
    assert len(record["id"]) == 32 and len(record["dataToken"]) == 32
    assert isinstance(record["createTime"], int) and isinstance(record["updateTime"], int)
    listed = await device.request(103)
    assert listed["cmd"] == 103 and [r["name"] for r in listed["body"]] == ["temp"]
    deleted = await device.request(102, name="temp")
    assert deleted["body"] == {"deviceToken": token, "name": "temp", "value": 22}
    assert (await device.request(103))["body"] == []
    await device.close()


async def test_json_types_are_kept(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    values = {"n": 3, "f": 1.25, "s": "text", "d": {"relay": True, "x": [1, 2]}, "a": [1, "b"],
              "b": False}
    for name, value in values.items():
        assert (await device.request(100, name=name, value=value))["code"] == 200
    records = {r["name"]: r for r in (await device.request(103))["body"]}
    assert {name: r["value"] for name, r in records.items()} == values
    assert {name: r["dataType"] for name, r in records.items()} == {
        "n": "number", "f": "number", "s": "string", "d": "dict", "a": "array", "b": "number"}
    await device.close()


async def test_adding_an_existing_name_deduplicates(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    names = [(await device.request(100, name="adasd", value="ddsad"))["body"]["name"]
             for _ in range(3)]
    assert names == ["adasd", "adasd(1)", "adasd(2)"]
    await device.request(102, name="adasd(1)")
    assert (await device.request(100, name="adasd", value="x"))["body"]["name"] == "adasd(1)"
    await device.close()


async def test_old_tab5_data_list_request(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    await device.request(100, name="a", value=1)
    reply = await device.request("DEVICE_DATA_LIST")
    assert reply["cmd"] == 103 and reply["body"][0]["name"] == "a"
    await device.close()


@pytest.mark.parametrize(("frame", "cmd", "message"), [
    ("{not json", 500, "invalid JSON"),
    ("[1, 2, 3]", 500, "JSON object"),
    ('"just a string"', 500, "JSON object"),
    ('{"deviceToken": "TOKEN", "body": 42}', 500, "body must be"),
    ('{"deviceToken": "TOKEN", "body": {"name": "x"}}', 500, "missing requestType"),
    ('{"deviceToken": "TOKEN", "body": {"requestType": 999}}', 500, "unknown requestType"),
    ('{"deviceToken": "TOKEN", "body": {"requestType": 100, "value": 1}}', 100, "missing name"),
    ('{"deviceToken": "TOKEN", "body": {"requestType": 100, "name": "x"}}', 100, "missing value"),
    ('{"deviceToken": "TOKEN", "body": {"requestType": 101, "name": "nope", "value": 1}}', 101,
     "no data named"),
    ('{"deviceToken": "TOKEN", "body": {"requestType": 102, "name": "nope"}}', 102,
     "no data named"),
    ('{"deviceToken": "TOKEN", "body": {"requestType": 104, "name": "nope"}}', 104,
     "no data named"),
    ('{"deviceToken": "TOKEN", "body": {"requestType": 100, "name": "", "value": 1}}', 100,
     "name cannot be empty"),
    ('{"deviceToken": "0123456789abcdef0123456789abcdef", "body": {"requestType": 103}}', 103,
     "does not match"),
    ('{"deviceToken": "0123456789abcdef0123456789abcdef"}', 500, "unknown deviceToken"),
])
async def test_bad_input_gets_an_error_and_the_connection_stays_usable(
        server: Server, frame: str, cmd: int, message: str) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    await device.request(100, name="kept", value=1)
    await device.send(frame.replace("TOKEN", token))
    raw = await device.recv()
    reply = json.loads(raw)
    assert reply["code"] == 500 and reply["cmd"] == cmd and reply["data"] is None
    assert message in reply["msg"]
    assert '"code":500' in raw
    listed = await device.request(103)
    assert [(r["name"], r["value"]) for r in listed["body"]] == [("kept", 1)]
    await device.close()


async def test_request_before_login_is_refused(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token, login=False)
    reply = await device.request(100, name="x", value=1)
    assert reply["code"] == 500 and "not logged in" in reply["msg"]
    await device.send({"deviceToken": token})
    assert await device.recv() == "device Login successful"
    assert (await device.request(103))["body"] == []
    await device.close()


async def test_unknown_token_login_is_not_logged_in(server: Server) -> None:
    device = await WsDevice.connect(server.ws_url, "f" * 32, login=False)
    await device.send({"deviceToken": "f" * 32})
    assert (await device.recv_json())["code"] == 500
    assert "not logged in" in (await device.request(103))["msg"]
    await device.close()


async def test_oversized_frame_closes_with_1009_and_others_carry_on(server: Server) -> None:
    token, other_token = server.register(), server.register()
    device = await WsDevice.connect(server.ws_url, token, max_size=None)
    other = await WsDevice.connect(server.ws_url, other_token)
    await device.send({"deviceToken": token,
                       "body": {"requestType": 100, "name": "big", "value": "x" * 70_000}})
    with pytest.raises(ConnectionClosed) as closed:
        await device.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert (await other.request(100, name="fine", value=1))["code"] == 200
    again = await WsDevice.connect(server.ws_url, token)
    assert (await again.request(103))["body"] == []
    await other.close()
    await again.close()


async def test_rest_writes_push_to_every_connection_of_the_device(server: Server) -> None:
    token, bystander_token = server.register(), server.register()
    first = await WsDevice.connect(server.ws_url, token)
    second = await WsDevice.connect(server.ws_url, token)
    bystander = await WsDevice.connect(server.ws_url, bystander_token)
    api = f"{server.url}/api/v2/{token}"
    async with httpx.AsyncClient() as http:
        await http.post(f"{api}/add", json={"dataType": "number", "name": "speed",
                                             "permissions": "1", "value": 5})
        for device in (first, second):
            push = await device.recv_json()
            assert push["cmd"] == 109 and push["code"] == 200
            assert push["body"]["name"] == "speed" and push["body"]["value"] == 5
            await device.request(103)  # what Tab5 does after a push; releases pacing
        await http.post(f"{api}/add", json={"dataType": "number", "name": "speed",
                                             "permissions": "1", "value": 6})
        for device in (first, second):
            push = await device.recv_json()
            assert push["cmd"] == 107 and push["body"]["value"] == 6
            await device.request(103)
        await http.delete(f"{api}/delete/speed", headers={"deviceToken": token, "key": "speed"})
        for device in (first, second):
            push = await device.recv_json()
            assert push["cmd"] == 108 and push["body"]["name"] == "speed"
    assert await bystander.before_marker() == []
    for device in (first, second, bystander):
        await device.close()


async def test_device_writes_push_to_its_other_connections_not_itself(server: Server) -> None:
    token = server.register()
    writer = await WsDevice.connect(server.ws_url, token)
    watcher = await WsDevice.connect(server.ws_url, token)
    assert (await writer.request(100, name="led", value="on"))["cmd"] == 100
    push = await watcher.recv_json()
    assert push["cmd"] == 109 and push["body"]["value"] == "on"
    assert await writer.before_marker() == []
    await writer.close()
    await watcher.close()


async def test_no_push_between_a_request_and_its_answer(server: Server) -> None:
    """Many requests in flight while pushes arrive: every answer is next to its request."""
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    await device.request(100, name="x", value=0)

    async def writes() -> None:
        async with httpx.AsyncClient() as http:
            for i in range(20):
                await http.post(f"{server.url}/api/v2/{token}/add",
                                json={"name": "y", "value": i, "dataType": "number"})

    writer = asyncio.create_task(writes())
    for i in range(40):
        await device.send({"deviceToken": token, "body": {"requestType": 101, "name": "x",
                                                           "value": i}})
        while True:
            message = await device.recv_json()
            if message["cmd"] == 101:
                assert message["body"]["value"] == i
                break
            assert message["cmd"] in (107, 109)
    await writer
    await device.close()


class Tab5:
    """Behaves like the Tab5 launcher: every push makes it re-send 103 and take the next frame
    as the data list. It fails if a push arrives where it expects that list."""

    def __init__(self, device: WsDevice) -> None:
        self.device = device
        self.shown: dict[str, object] = {}
        self.refetches = 0

    async def run(self, last: str) -> None:
        """Follow pushes until the one about field `last` (the last field written)."""
        while True:
            push = await self.device.recv_json()
            assert push["cmd"] in (107, 108, 109), push
            self.refetches += 1
            listed = await self.device.request(103)
            assert listed["cmd"] == 103, f"took a push as the data list: {listed}"
            self.shown = {r["name"]: r["value"] for r in listed["body"]}
            if push["body"]["name"] == last:
                return


async def test_burst_of_50_writes_leaves_a_tab5_showing_the_final_values(server: Server) -> None:
    token = server.register(device_type="tab5")
    tab5 = Tab5(await WsDevice.connect(server.ws_url, token))
    running = asyncio.create_task(tab5.run(last="end"))
    async with httpx.AsyncClient() as http:
        for i in range(50):
            await http.post(f"{server.url}/api/v2/{token}/add",
                            json={"name": f"f{i % 5}", "value": i, "dataType": "number"})
        await http.post(f"{server.url}/api/v2/{token}/add", json={"name": "end", "value": 1})
    await running
    assert tab5.shown == {**{f"f{k}": 45 + k for k in range(5)}, "end": 1}
    assert tab5.refetches <= 51
    assert await tab5.device.before_marker() == [], "no push after the last write's"
    await tab5.device.close()


async def test_pacing_releases_after_two_seconds_without_a_request(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    async with httpx.AsyncClient() as http:
        for name in ("a", "b"):
            await http.post(f"{server.url}/api/v2/{token}/add", json={"name": name, "value": 1})
    first = await device.recv_json()
    assert first["body"]["name"] == "a"
    started = time.monotonic()
    second = await device.recv_json(timeout=4)
    assert second["body"]["name"] == "b" and time.monotonic() - started > 1.5
    await device.close()


async def test_a_device_that_reads_slowly_gets_every_answer_in_order(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token, max_size=2**22)
    for i in range(16):
        assert (await device.request(100, name=f"big{i}", value="x" * 3000))["code"] == 200
    for i in range(300):  # about 8 MB of answers, far beyond the socket buffers, unread
        body = {"requestType": 103} if i % 2 else {"requestType": 104, "name": f"big{i % 16}"}
        await device.send({"deviceToken": token, "body": body})
    await asyncio.sleep(1.0)
    for i in range(300):
        answer = await device.recv_json(timeout=10)
        assert answer["code"] == 200
        if i % 2:
            assert answer["cmd"] == 103 and len(answer["body"]) == 16
        else:
            assert answer["cmd"] == 104 and answer["body"]["name"] == f"big{i % 16}"
    assert (await device.request(104, name="big3"))["body"]["value"] == "x" * 3000
    await device.close()
