"""Hostile input on every path is answered in that protocol's own error format, stores nothing and
logs no traceback: values nested too deep, integers beyond 64 bits, digits such as "²" that
`str.isdigit` takes and `int` refuses, page numbers out of range, malformed multipart bodies, wrong
methods; and the OpenAPI document says what the server does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.console_client import ConsoleUser
from support.espai import Tenant, add_device, api, new_tenant
from support.mqtt_clients import RawMqtt
from support.server import Server, random_mac
from websockets.asyncio.client import connect

from devicecloud.core.models import LARGEST_INT, MAX_DEPTH, SMALLEST_INT

TOO_DEEP = "nested deeper than"
BEYOND_64_BITS = "integer beyond 64 bits"


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: at the end its log must hold no traceback."""
    instance = Server(tmp_path_factory.mktemp("clear-errors") / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()
    assert "Traceback" not in instance.log(), instance.log()


@pytest.fixture(scope="module")
def tenant(quiet: Server) -> Tenant:
    return new_tenant(quiet)


def nested(depth: int) -> str:
    """A JSON array `depth` levels deep around the number 1."""
    return "[" * depth + "1" + "]" * depth


def add(server: Server, token: str, value_json: str, name: str = "v") -> dict[str, Any]:
    body = f'{{"name": "{name}", "dataType": "array", "permissions": "1", "value": {value_json}}}'
    reply = httpx.post(f"{server.url}/api/v2/{token}/add", content=body)
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    return doc


def names(server: Server, token: str) -> list[str]:
    doc = httpx.get(f"{server.url}/api/v2/{token}/list").json()
    assert doc["code"] == 200, doc
    return [row["name"] for row in doc["data"]["rows"]]


def refused(doc: dict[str, Any], words: str) -> None:
    assert doc["code"] == 500 and doc["data"] is None and words in doc["msg"], doc


# F13, F19: the REST API -------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 251, 252, 253, 254, 300])
def test_rest_add_refuses_values_nested_too_deep_and_stores_nothing(quiet: Server,
                                                                    depth: int) -> None:
    token = quiet.register()
    refused(add(quiet, token, nested(depth)), TOO_DEEP)
    assert names(quiet, token) == []


async def test_a_value_at_the_depth_limit_reads_back_everywhere(quiet: Server) -> None:
    token = quiet.register()
    deepest = json.loads(nested(MAX_DEPTH))
    user = ConsoleUser.sign_up(quiet)
    assert user.bind(token).status_code == 303
    feed_url = f"ws://127.0.0.1:{quiet.http_port}/console/live/{token}"
    device = await WsDevice.connect(quiet.ws_url, token)
    async with connect(feed_url, additional_headers={"Cookie": user.cookie_header()},
                       origin=quiet.url) as feed:
        assert json.loads(await asyncio.wait_for(feed.recv(), 2))["type"] == "snapshot"
        assert add(quiet, token, nested(MAX_DEPTH))["data"]["value"] == deepest
        assert (await device.recv_json())["body"]["value"] == deepest  # the device's push
        while (change := json.loads(await asyncio.wait_for(feed.recv(), 2)))["type"] != "field":
            pass
        assert change["record"]["value"] == deepest
    assert (await device.request(103))["body"][0]["value"] == deepest
    await device.close()
    api_url = f"{quiet.url}/api/v2/{token}"
    assert httpx.get(f"{api_url}/list").json()["data"]["rows"][0]["value"] == deepest
    assert httpx.get(f"{api_url}/historyByKey/v").json()["data"]["rows"][0]["value"] == deepest
    assert httpx.get(f"{api_url}/dataByKey/v").json()["data"]["value"] == deepest
    assert user.get(f"/console/devices/{token}").status_code == 200
    assert user.get(f"/console/devices/{token}/history", params={"name": "v"}).status_code == 200


@pytest.mark.parametrize("number", [LARGEST_INT + 1, SMALLEST_INT - 1, 10**29, -(10**40)])
def test_rest_add_refuses_integers_beyond_64_bits(quiet: Server, number: int) -> None:
    token = quiet.register()
    refused(add(quiet, token, str(number)), BEYOND_64_BITS)
    refused(add(quiet, token, f'{{"deep": [{number}]}}'), BEYOND_64_BITS)
    assert names(quiet, token) == []


def test_64_bit_integers_are_kept_exactly(quiet: Server) -> None:
    token = quiet.register()
    for name, number in (("big", LARGEST_INT), ("small", SMALLEST_INT)):
        assert add(quiet, token, str(number), name)["code"] == 200
        raw = httpx.get(f"{quiet.url}/api/v2/{token}/dataByKey/{name}").text
        assert f'"value":{number},' in raw, raw
    digits = '"12345678901234567890123456789"'  # digits inside a string are just text
    assert add(quiet, token, digits, "text")["data"]["value"] == json.loads(digits)


# F13, F19: WebSocket and MQTT -------------------------------------------------------------------

async def test_websocket_refuses_deep_values_and_huge_integers(quiet: Server) -> None:
    token = quiet.register()
    device = await WsDevice.connect(quiet.ws_url, token)
    try:
        for request_type in (100, 101):
            answer = await device.request(request_type, name="v",
                                          value=json.loads(nested(MAX_DEPTH + 1)))
            assert answer["code"] == 500 and answer["cmd"] == request_type, answer
            assert TOO_DEEP in answer["msg"]
        for frame in (f'{{"deviceToken": "{token}", "body": {{"requestType": 100, "name": "v", '
                      f'"value": {nested(253)}}}}}',
                      f'{{"deviceToken": "{token}", "body": {{"requestType": 100, "name": "v", '
                      f'"value": {LARGEST_INT + 1}}}}}',
                      f"set({token},v,{nested(MAX_DEPTH + 1)},array)",
                      f"set({token},v,{10**30},number)"):
            await device.send(frame)
            answer = await device.recv_json()
            assert answer["code"] == 500 and (TOO_DEEP in answer["msg"]
                                              or BEYOND_64_BITS in answer["msg"]), answer
        listing = await device.request(103)  # the marker: every refusal above came first
        assert listing["code"] == 200 and listing["body"] == [], listing
    finally:
        await device.close()


async def test_mqtt_refuses_deep_values_and_huge_integers(quiet: Server) -> None:
    mac = random_mac()
    token = quiet.register(mac)
    client = await RawMqtt.device(quiet.mqtt_port, token, mac)
    try:
        for value in (nested(MAX_DEPTH + 1), nested(253), str(-(10**25))):
            await client.publish(token, f'{{"deviceToken": "{token}", "body": {{"requestType": '
                                        f'100, "name": "v", "value": {value}}}}}'.encode())
            answer = await client.recv_json()
            assert answer["code"] == 500 and (TOO_DEEP in answer["msg"]
                                              or BEYOND_64_BITS in answer["msg"]), answer
        await client.publish(token, {"deviceToken": token, "body": {"requestType": 103}})
        listing = await client.recv_json()
        assert listing["code"] == 200 and listing["body"] == [], listing
    finally:
        await client.close()


# F13, F18, F19: the console ---------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "text", "words"), [
    ("json", nested(MAX_DEPTH + 1), TOO_DEEP),
    ("json", nested(253), TOO_DEEP),
    ("json", f"[{10**30}]", BEYOND_64_BITS),
    ("number", "1" * 30, "whole number"),
    ("number", "-" + "9" * 20, "whole number"),
])
def test_console_refuses_what_cannot_be_kept(quiet: Server, kind: str, text: str,
                                             words: str) -> None:
    token = quiet.register()
    user = ConsoleUser.sign_up(quiet)
    assert user.bind(token).status_code == 303
    reply = user.post(f"/console/devices/{token}/fields/add", name="v", type=kind, value=text)
    assert words in user.flash(reply)
    assert names(quiet, token) == []


def test_console_history_page_of_odd_digits(quiet: Server) -> None:
    token = quiet.register()
    user = ConsoleUser.sign_up(quiet)
    assert user.bind(token).status_code == 303
    assert add(quiet, token, "1")["code"] == 200
    for page in ("²", "٣", "9" * 30):
        reply = user.get(f"/console/devices/{token}/history", params={"name": "v", "page": page})
        assert reply.status_code == 200, reply.text


# F13, F18, F19: the ESP-AI API ------------------------------------------------------------------

def test_espai_local_data_refuses_deep_values_and_huge_integers(quiet: Server,
                                                               tenant: Tenant) -> None:
    record = add_device(quiet, tenant, random_mac())["data"]
    for local in (nested(MAX_DEPTH), nested(253), f"[{10**21}]"):
        raw = f'{{"id": "{record["id"]}", "localData": {{"a": {local}}}}}'.encode()
        doc = api(quiet, "/devices/update", None, tenant.open_api_key, raw=raw)
        assert doc["success"] is False and doc["code"] == 400, doc
        assert TOO_DEEP in doc["message"] or BEYOND_64_BITS in doc["message"], doc
    doc = api(quiet, "/devices/update", {"id": record["id"], "localData": {"a": [[1]]}},
              tenant.open_api_key)
    assert doc["success"] is True, doc


@pytest.mark.parametrize("filters", [{"page": "²"}, {"limit": "٣"}, {"page": "9" * 40}])
def test_espai_list_refuses_odd_digits(quiet: Server, tenant: Tenant,
                                       filters: dict[str, str]) -> None:
    doc = api(quiet, "/devices/list", filters, tenant.open_api_key)
    assert doc["success"] is False and doc["code"] == 400, doc


def test_malformed_firmware_multipart_is_a_failure_envelope(own_server: Server) -> None:
    server = own_server.start()
    tenant = new_tenant(server)
    bodies = [b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
              b"\r\nabc",  # never closed
              b"--xyz\r\nno-colon-header\r\n\r\nabc\r\n--xyz--\r\n",
              b"--xyz\r\nContent-Type: text/plain\r\n\r\nabc\r\n--xyz--\r\n",
              b"garbage without any boundary"]
    for body in bodies:
        reply = httpx.post(f"{server.url}/firmware/upload", content=body,
                           headers={"authorization": tenant.open_api_key,
                                    "content-type": "multipart/form-data; boundary=xyz"})
        assert reply.status_code == 200, reply.text
        doc = reply.json()
        assert doc["success"] is False and doc["code"] in (400, 401), doc
    assert "Traceback" not in server.log(), server.log()


# F14, F18: history pages ------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    {"pageNum": str(10**20)}, {"pageNum": "²"}, {"pageSize": "²"}, {"page": "٣"},
    {"pageNum": "1000001"}, {"pageNum": "-1"}, {"pageSize": "1e3"},
])
def test_history_refuses_bad_pages_before_reading(quiet: Server, query: dict[str, str]) -> None:
    token = quiet.register()
    record = add(quiet, token, "1")["data"]
    refused(httpx.get(f"{quiet.url}/api/v2/{token}/historyByKey/v", params=query).json(),
            "pageNum")
    refused(httpx.get(f"{quiet.url}/api/v2/{record['dataToken']}/history", params=query).json(),
            "pageNum")
    refused(httpx.get(f"{quiet.url}/api/v2/{token}/historyByKey/missing",
                      params=query).json(), "pageNum")


def test_history_pages_in_range_still_read(quiet: Server) -> None:
    token = quiet.register()
    assert add(quiet, token, "1")["code"] == 200
    for query in ({"pageNum": "0"}, {"pageNum": "1000000"}, {"pageSize": "5000"}):
        doc = httpx.get(f"{quiet.url}/api/v2/{token}/historyByKey/v", params=query).json()
        assert doc["code"] == 200 and doc["data"]["total"] == 1, doc


# F20: methods and the OpenAPI document ----------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/api/v2/device/registerMac", "POST"),
    ("GET", "/devices/list", "POST"),
    ("DELETE", "/firmware/0123/a.bin", "GET, HEAD"),
    ("POST", "/api/v2/0123/list", "GET, HEAD"),
])
def test_405_names_the_allowed_methods(quiet: Server, method: str, path: str,
                                       allow: str) -> None:
    reply = httpx.request(method, f"{quiet.url}{path}")
    assert reply.status_code == 405
    assert set(reply.headers["allow"].split(", ")) == set(allow.split(", "))
    assert reply.json()["code"] == 500


def test_openapi_marks_only_bodies_with_required_fields_required(quiet: Server) -> None:
    paths = httpx.get(f"{quiet.url}/openapi.json").json()["paths"]
    required = {path: op["requestBody"]["required"] for path, methods in paths.items()
                for op in methods.values() if "requestBody" in op}
    assert required["/devices/list"] is False and required["/firmware/list"] is False
    assert required["/devices/del"] is False
    assert required["/devices/update"] is True and required["/devices/add"] is True
    download = paths["/firmware/{firmware_id}/{name}"]["get"]["responses"]
    assert set(download) == {"200", "404"}
    reply = httpx.get(f"{quiet.url}/firmware/{'0' * 32}/a.bin")
    assert reply.status_code == 404
    assert reply.json() == {"success": False, "message": reply.json()["message"], "code": 404}


def test_nul_characters_are_refused_clearly_on_either_engine(quiet: Server,
                                                             tenant: Tenant) -> None:
    """SQLite would keep a NUL in text and PostgreSQL refuses it: both answer the same."""
    token = quiet.register()
    doc = httpx.post(f"{quiet.url}/api/v2/{token}/add", json={"name": "a\0b", "value": 1}).json()
    assert doc["code"] == 500 and "NUL" in doc["msg"], doc
    assert names(quiet, token) == []
    info = httpx.get(f"{quiet.url}/sdk/get_server_info_by_api_key",
                     params={"api_key": "x\0y"}).json()
    assert info["success"] is False, info
    mac = random_mac()
    add_device(quiet, tenant, mac)
    rows = api(quiet, "/devices/list", {"device_id": mac}, tenant.open_api_key)["data"]
    changed = api(quiet, "/devices/update", {"id": rows[0]["id"], "name": "a\0b"},
                  tenant.open_api_key)
    assert changed["success"] is False and "NUL" in changed["message"], changed
