"""devicecloud's own API, /api/v1, against real servers over HTTP: Bearer auth, problem+json
errors, another account's device as 404, binding by token and pairing code (push 106 over a
real WebSocket), listing with filters and cursors, renaming and tagging, releasing, field edits
pushed as 109/107/108, the account.api limit, and an edit on one process of a cluster reaching
a device held by another."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.console_client import ConsoleUser
from support.polling import eventually
from support.server import CLUSTER_POSTGRES, Server, postgres_database, postgres_problem, random_mac
from support.services import PrivateRedis

PROBLEM = "application/problem+json"


class Api:
    """An account's client of /api/v1."""

    def __init__(self, server: Server, key: str) -> None:
        self.server = server
        self.key = key
        self.http = httpx.Client(base_url=server.url + "/api/v1",
                                 headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def call(self, method: str, path: str, status: int = 200, **options: Any) -> Any:
        reply = self.http.request(method, path, **options)
        assert reply.status_code == status, (reply.status_code, reply.text)
        if status >= 400:
            return problem_of(reply)
        return reply.json() if reply.content else None

    def bind(self, token: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("POST", "/devices", json={"token": token})
        return found

    def walk(self, **query: Any) -> tuple[list[dict[str, Any]], int]:
        """Every device the list gives by following `next_cursor`, and the number of pages."""
        items, pages, cursor = [], 0, None
        while pages < 100:
            page = self.call("GET", "/devices", params={**query, **(
                {"cursor": cursor} if cursor else {})})
            items += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                return items, pages
        raise AssertionError("the cursors never ended")


def problem_of(reply: httpx.Response) -> dict[str, Any]:
    """The RFC 9457 problem of an error answer, checked for its shape."""
    assert reply.headers["content-type"] == PROBLEM, reply.headers
    doc: dict[str, Any] = reply.json()
    assert set(doc) == {"type", "title", "status", "detail"}, doc
    assert doc["status"] == reply.status_code and doc["type"].startswith("/problems/")
    return doc


def account(server: Server) -> Api:
    """A new account, signed up in the console; its key as the account page shows it."""
    return Api(server, ConsoleUser.sign_up(server).api_key())


async def push_of(device: WsDevice, cmd: int, timeout: float = 5.0) -> dict[str, Any]:
    """The next push with this `cmd` (other pushes are passed over)."""
    async with asyncio.timeout(timeout):
        while (message := await device.recv_json(timeout))["cmd"] != cmd:
            pass
    found: dict[str, Any] = message
    return found


# Auth and errors -------------------------------------------------------------------------------

def test_without_the_right_bearer_key_every_call_is_401(server: Server) -> None:
    url = f"{server.url}/api/v1/devices"
    ada = account(server)
    for headers in ({}, {"Authorization": "Bearer " + "0" * 32}, {"Authorization": "Bearer x"},
                    {"Authorization": ada.key}, {"Authorization": "Basic " + ada.key}):
        doc = problem_of(httpx.get(url, headers=headers))
        assert doc["status"] == 401 and "Authorization" in doc["detail"], doc
    assert ada.call("GET", "/devices") == {"items": [], "next_cursor": None}
    assert httpx.get(url, headers={"authorization": f"bearer {ada.key}"}).status_code == 200


def test_unknown_paths_methods_and_bad_parameters_are_problems_naming_them(
        server: Server) -> None:
    ada = account(server)
    assert "/api/v1/nothing" in ada.call("GET", "/nothing", 404)["detail"]
    assert ada.http.put("/devices").headers["allow"]
    ada.call("PUT", "/devices", 405)
    for query, named in (({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
                         ({"limit": "x"}, "limit"), ({"cursor": "!!"}, "cursor"),
                         ({"cursor": "WzFd" + "A"}, "cursor"), ({"cursor": "eyJhIjoxfQ"}, "cursor"),
                         ({"online": "maybe"}, "online")):
        assert ada.call("GET", "/devices", 400, params=query)["detail"].startswith(named)
    assert ada.call("POST", "/devices", 400, content=b"{")["detail"].startswith("body")
    assert ada.call("GET", "/devices/" + "a" * 32, 404)["title"] == "Not found"


def test_another_accounts_device_is_404_on_every_call(server: Server) -> None:
    ada, bob = account(server), account(server)
    device = ada.bind(server.register())
    path = f"/devices/{device['id']}"
    for method, suffix, body in (("GET", "", None), ("PATCH", "", {"name": "mine"}),
                                 ("DELETE", "", None), ("GET", "/fields", None),
                                 ("PUT", "/fields/x", {"value": 1}), ("DELETE", "/fields/x", None)):
        doc = bob.call(method, path + suffix, 404, json=body)
        assert device["id"] in doc["detail"], doc
    assert ada.call("GET", path)["name"] == ""


# Binding and releasing -------------------------------------------------------------------------

async def test_bind_by_token_pushes_106_and_answers_the_device_by_public_id(
        server: Server) -> None:
    mac = random_mac()
    token = server.register(mac=mac)
    device = await WsDevice.connect(server.ws_url, token)
    ada, bob = account(server), account(server)
    try:
        bound = ada.bind(token.upper())
        push = await push_of(device, 106)
        assert push["code"] == 200 and push["body"]["deviceToken"] == token
        assert len(bound["id"]) == 32 and bound["id"] != token and token not in str(bound)
        assert bound["mac"] == mac.lower() and bound["online"] is True
        assert bound["transports"] == ["websocket"] and bound["tags"] == []
        assert "another account" in bob.call("POST", "/devices", 409, json={"token": token})[
            "detail"]
        for body, named in (({"token": "12"}, "token"), ({}, "body"), ([1], "body"),
                            ({"token": token, "pair_code": "K7QM4XPA"}, "body"),
                            ({"token": 5}, "token"), ({"mac": "x"}, "mac")):
            assert bob.call("POST", "/devices", 422, json=body)["detail"].startswith(named)
        assert bob.call("POST", "/devices", 404, json={"token": "f" * 32})["detail"].startswith(
            "token")
        assert ada.bind(token)["id"] == bound["id"]  # again is fine
    finally:
        await device.close()


async def test_bind_by_pair_code_and_release(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    ada, bob = account(server), account(server)
    try:
        code = (await device.request(112))["body"]["pairCode"]
        assert bob.call("POST", "/devices", 422, json={"pair_code": "12"})["detail"].startswith(
            "pair_code")
        assert bob.call("POST", "/devices", 404, json={"pair_code": "ZZZZ-ZZZZ"})[
            "detail"].startswith("pair_code")
        bound = ada.call("POST", "/devices", json={"pair_code": code.lower()})
        assert (await push_of(device, 106))["body"]["deviceToken"] == token
        assert bob.call("POST", "/devices", 404, json={"pair_code": code})  # used up
        ada.call("PATCH", f"/devices/{bound['id']}",
                 json={"tags": ["home"], "description": "in the hall"})
        ada.call("DELETE", f"/devices/{bound['id']}", 204)
        assert await device.before_marker() == []  # as the console's release: no EzData push
        ada.call("GET", f"/devices/{bound['id']}", 404)
        ada.call("DELETE", f"/devices/{bound['id']}", 404)
        again = bob.bind(token)  # free to bind again, without what Ada wrote about it
        assert again["id"] == bound["id"]
        assert (again["tags"], again["description"]) == ([], "")
    finally:
        await device.close()


def test_wrong_pairing_codes_are_counted_as_the_consoles(own_server: Server) -> None:
    own_server.start()
    ada = account(own_server)
    for _ in range(10):  # the console's budget per account: 10 wrong codes in 10 minutes
        ada.call("POST", "/devices", 404, json={"pair_code": "ZZZZ-ZZZZ"})
    reply = ada.http.post("/devices", json={"pair_code": "ZZZZ-ZZZZ"})
    doc = problem_of(reply)
    assert doc["status"] == 429 and doc["detail"].startswith("pair_code"), doc
    assert 1 <= int(reply.headers["retry-after"]) <= 600
    assert account(own_server).call("POST", "/devices", 404, json={"pair_code": "ZZZZ-ZZZZ"})


# Listing ---------------------------------------------------------------------------------------

async def test_paging_lists_every_device_once_in_a_stable_order(server: Server) -> None:
    ada = account(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async def bind() -> str:
            mac = random_mac()
            token = (await http.post("/api/v2/device/registerMac",
                                     json={"deviceType": "basic", "mac": mac})).json()["data"]
            reply = await http.post("/api/v1/devices", json={"token": token},
                                    headers={"Authorization": f"Bearer {ada.key}"})
            assert reply.status_code == 200, reply.text
            found: str = reply.json()["id"]
            return found

        bound = await asyncio.gather(*(bind() for _ in range(130)))
    whole = ada.call("GET", "/devices", params={"limit": 1000})
    ids = [item["id"] for item in whole["items"]]
    assert sorted(ids) == sorted(bound) and whole["next_cursor"] is None
    first = ada.call("GET", "/devices")
    assert len(first["items"]) == 100 and first["next_cursor"]
    walked, pages = ada.walk()
    assert [item["id"] for item in walked] == ids and pages == 2
    walked, pages = ada.walk(limit=7)
    assert [item["id"] for item in walked] == ids and pages == 19


async def test_filters_q_tag_and_online(server: Server) -> None:
    ada = account(server)
    macs = [random_mac() for _ in range(12)]
    tokens = [server.register(mac=mac) for mac in macs]
    ids = [ada.bind(token)["id"] for token in tokens]
    ada.call("PATCH", f"/devices/{ids[3]}", json={"name": "Greenhouse North"})
    ada.call("PATCH", f"/devices/{ids[4]}", json={"name": "greenhouse south",
                                                  "tags": ["garden", "south"]})
    ada.call("PATCH", f"/devices/{ids[9]}", json={"tags": ["garden"]})

    def listed(**query: Any) -> list[str]:
        return [item["id"] for item in ada.walk(limit=2, **query)[0]]

    assert listed(q="GREENHOUSE") == [ids[3], ids[4]]
    assert listed(q="north") == [ids[3]]
    colon = ":".join(macs[7][i:i + 2] for i in range(0, 12, 2)).upper()
    assert listed(q=colon[3:11]) == [ids[7]]
    assert listed(q="50%_") == []
    assert listed(tag="garden") == [ids[4], ids[9]]
    assert listed(tag="south", q="green") == [ids[4]]
    assert listed(tag="Garden") == []
    online = [await WsDevice.connect(server.ws_url, tokens[n]) for n in (2, 10)]
    try:
        assert listed(online=1) == [ids[2], ids[10]]
        assert listed(online="0") == [i for n, i in enumerate(ids) if n not in (2, 10)]
        assert listed(online=1, tag="garden") == []
    finally:
        for device in online:
            await device.close()
    eventually(lambda: listed(online=1) == [], "both devices offline")


# Get, rename, tags, description ----------------------------------------------------------------

def test_patch_renames_tags_and_describes_and_refuses_bad_shapes(server: Server) -> None:
    ada = account(server)
    device = ada.bind(server.register())
    path = f"/devices/{device['id']}"
    changed = ada.call("PATCH", path, json={"name": "  lamp  ", "tags": ["b", "a", "b", " c "],
                                            "description": "on the desk"})
    assert (changed["name"], changed["tags"], changed["description"]) == (
        "lamp", ["a", "b", "c"], "on the desk")
    assert changed["updated"] >= device["updated"]
    assert ada.call("PATCH", path, json={"description": ""})["name"] == "lamp"
    got = ada.call("GET", path)
    assert (got["name"], got["tags"], got["description"], got["fields"]) == (
        "lamp", ["a", "b", "c"], "", [])
    for body, named in (({"name": "x" * 129}, "name"), ({"name": 5}, "name"),
                        ({"tags": "a"}, "tags"), ({"tags": [""]}, "tags.0"),
                        ({"tags": ["ok", "y" * 65]}, "tags.1"), ({"tags": [" "]}, "tags[0]"),
                        ({"tags": [str(n) for n in range(51)]}, "tags"),
                        ({"colour": "red"}, "colour"), (["name"], "body")):
        doc = ada.call("PATCH", path, 422, json=body)
        assert doc["detail"].startswith(named) and doc["title"] == "Unprocessable content", doc
    assert ada.call("PATCH", path, json={"tags": [], "name": ""})["tags"] == []
    assert ada.call("GET", path)["name"] == ""


# Fields ----------------------------------------------------------------------------------------

async def test_field_edits_push_109_107_108_like_the_consoles(server: Server) -> None:
    token = server.register()
    ada = account(server)
    public_id = ada.bind(token)["id"]
    device = await WsDevice.connect(server.ws_url, token)
    fields = f"/devices/{public_id}/fields"
    try:
        put = ada.call("PUT", f"{fields}/relay", json={"value": {"on": True}})
        assert (put["name"], put["value"], put["data_type"]) == ("relay", {"on": True}, "dict")
        push = await push_of(device, 109)
        assert push["body"]["name"] == "relay" and push["body"]["value"] == {"on": True}
        await device.request(103)  # as Tab5 does after a push: lets the next push through
        ada.call("PUT", f"{fields}/relay", json={"value": 0, "data_type": "number"})
        assert (await push_of(device, 107))["body"]["value"] == 0
        await device.request(103)
        ada.call("PUT", f"{fields}/two%20words", json={"value": "a/b"})
        assert (await push_of(device, 109))["body"]["name"] == "two words"
        await device.request(103)
        listed = ada.call("GET", fields)
        assert [(f["name"], f["value"]) for f in listed["items"]] == [("relay", 0),
                                                                      ("two words", "a/b")]
        page = ada.call("GET", fields, params={"limit": 1})
        rest = ada.call("GET", fields, params={"limit": 1, "cursor": page["next_cursor"]})
        assert [f["name"] for f in page["items"] + rest["items"]] == ["relay", "two words"]
        assert rest["next_cursor"] is None
        ada.call("DELETE", f"{fields}/relay", 204)
        assert (await push_of(device, 108))["body"]["name"] == "relay"
        assert "relay" in ada.call("DELETE", f"{fields}/relay", 404)["detail"]
        for body, named in (({}, "value"), ({"value": 1, "x": 2}, "x"), (5, "body")):
            assert ada.call("PUT", f"{fields}/f", 422, json=body)["detail"].startswith(named)
        assert ada.call("PUT", f"{fields}/big", 413, json={"value": "x" * 70_000})
        assert [f["name"] for f in ada.call("GET", f"/devices/{public_id}")["fields"]] == [
            "two words"]
        assert await device.before_marker() == []  # no push beyond those awaited
    finally:
        await device.close()


def test_openapi_describes_every_v1_operation_with_its_models(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    v1 = {(path, method): op for path, methods in spec["paths"].items()
          for method, op in methods.items() if path.startswith("/api/v1/")
          and "{token}" not in path}
    mine = {("/api/v1/devices", "get"), ("/api/v1/devices", "post"),
                       ("/api/v1/devices/{id}", "get"), ("/api/v1/devices/{id}", "patch"),
                       ("/api/v1/devices/{id}", "delete"), ("/api/v1/devices/{id}/fields", "get"),
                       ("/api/v1/devices/{id}/fields/{name}", "put"),
                       ("/api/v1/devices/{id}/fields/{name}", "delete")}
    assert mine <= set(v1)
    for path, method in mine:
        op = v1[path, method]
        assert op["security"] == [{"bearer": []}], path
        assert op["responses"]["401"]["content"][PROBLEM]["schema"]["$ref"].endswith("Problem")
        if method in ("post", "patch", "put"):
            assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        ok = op["responses"].get("200") or op["responses"]["204"]
        assert method == "delete" or ok["content"]["application/json"]["schema"]
    schemas = spec["components"]["schemas"]
    assert {"DeviceOut", "DeviceDetail", "DevicePage", "DevicePatch", "BindRequest",
            "FieldPut", "FieldOut", "FieldList", "Problem"} <= set(schemas)
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


# The account.api limit -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("api-limited") / "data",
                      extra_args=("--limit", "account.api=1/min:3")).start()
    yield instance
    assert instance.stop() == 0, instance.log()


def test_beyond_account_api_the_answer_is_429_with_retry_after(limited: Server) -> None:
    ada, bob = account(limited), account(limited)
    for _ in range(3):
        ada.call("GET", "/devices")
    reply = ada.http.get("/devices")
    doc = problem_of(reply)
    assert doc["status"] == 429 and "account.api" in doc["detail"], doc
    assert 1 <= int(reply.headers["retry-after"]) <= 60
    assert bob.call("GET", "/devices")["items"] == []  # counted per account


# Across processes ------------------------------------------------------------------------------

@pytest.fixture
def two(tmp_path: Path) -> Iterator[list[Server]]:
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    redis = PrivateRedis(tmp_path)
    redis.start()
    url = postgres_database(tmp_path / "data", CLUSTER_POSTGRES)
    servers = [Server(tmp_path / "data", extra_args=("--bus-url", redis.url),
                      env={"DEVICECLOUD_DATABASE_URL": url}) for _ in range(2)]
    try:
        yield [instance.start() for instance in servers]
    finally:
        for instance in servers:
            if instance.process is not None and instance.process.poll() is None:
                instance.stop(signal.SIGKILL)
        redis.stop()


async def test_a_put_on_one_process_reaches_the_device_on_the_other(two: list[Server]) -> None:
    a, b = two
    token = a.register()
    device = await WsDevice.connect(b.ws_url, token)
    on_a = account(a)
    try:
        public_id = on_a.bind(token)["id"]
        await push_of(device, 106)
        assert Api(b, on_a.key).call("GET", f"/devices/{public_id}")["online"] is True
        listed = on_a.call("GET", "/devices", params={"online": 1})["items"]
        assert [item["id"] for item in listed] == [public_id]  # presence held by the other
        on_a.call("PUT", f"/devices/{public_id}/fields/lamp", json={"value": 1})
        push = await push_of(device, 109)
        assert push["body"]["name"] == "lamp" and push["body"]["value"] == 1
    finally:
        await device.close()
