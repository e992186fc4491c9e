"""The ESP-AI third-party API (spec section 3): list, update, del, unbind, bad input, OpenAPI."""

from __future__ import annotations

import httpx
import pytest
from support.clients import WsDevice
from support.espai import (
    Firmware,
    Tenant,
    add_device,
    api,
    cli,
    colon_mac,
    listed,
    new_tenant,
    wait_online,
)
from support.polling import eventually
from support.server import Server, random_mac

SEED_RECORD_KEYS = [
    "id", "create_time", "update_time", "sort", "ext1", "ext2", "ext3", "name", "user_id",
    "equipment_id", "api_key", "enable", "is_online", "device_id", "wifi_ssid", "wifi_pwd",
    "net_ip", "version", "bin_id", "nation", "province", "city", "type", "memory", "latitude",
    "longitude", "user_name", "user_phone"]


@pytest.fixture(scope="module")
def tenant(server: Server) -> Tenant:
    return new_tenant(server)


@pytest.fixture(scope="module")
def other(server: Server) -> Tenant:
    return new_tenant(server, name="", phone="")


def failure(doc: dict, message: str, code: int) -> None:
    assert doc == {"success": False, "message": message, "code": code}


# list --------------------------------------------------------------------------------------------

def test_list_shows_the_accounts_devices_as_the_seed_does(server: Server, other: Tenant) -> None:
    tenant = new_tenant(server)
    mac = random_mac()
    assert add_device(server, tenant, mac)["success"] is True
    add_device(server, other, random_mac())
    doc = listed(server, tenant)
    assert list(doc) == ["success", "message", "data", "totalNumber"]
    assert doc["message"] == "请求成功" and doc["totalNumber"] == 1
    (row,) = doc["data"]
    assert list(row) == [*SEED_RECORD_KEYS, "battery"]
    assert len(row["id"]) == 32 and int(row["id"], 16) >= 0
    assert row["device_id"] == colon_mac(mac)
    assert row["equipment_id"] == tenant.agent_id and row["api_key"] == tenant.api_key
    assert row["enable"] == "0" and row["type"] == "0" and row["is_online"] == "0"
    assert (row["version"], row["bin_id"]) == ("1.22.34", "0")
    assert (row["wifi_ssid"], row["wifi_pwd"]) == ("联域科技", "lykj987654321")
    assert row["user_name"] == "琳琅" and row["user_phone"] == 15916888888
    assert isinstance(row["create_time"], int) and row["update_time"] >= row["create_time"]
    assert row["sort"] is None and row["memory"] is None and row["battery"] is None


def test_list_filters_match_exactly_and_name_as_a_substring(server: Server) -> None:
    tenant = new_tenant(server)
    macs = [random_mac() for _ in range(3)]
    for mac, version in zip(macs, ["1.0", "2.0", "2.0"], strict=True):
        add_device(server, tenant, mac, version=version)
    rows = listed(server, tenant)["data"]
    ids = [row["id"] for row in rows]
    for number, row in enumerate(rows):
        api(server, "/devices/update", {"id": row["id"], "name": f"小琅{number}号",
                                        "enable": number % 2}, tenant.open_api_key)

    def ids_for(**filters: object) -> list[str]:
        doc = listed(server, tenant, **filters)
        assert doc["totalNumber"] == len(doc["data"])
        return [row["id"] for row in doc["data"]]

    assert ids_for() == ids  # a stable order: oldest first
    assert ids_for(name="小琅") == ids
    assert ids_for(name="1号") == [ids[1]]
    assert ids_for(name="小琅1") == [ids[1]]
    assert ids_for(version="2.0") == ids[1:]
    assert ids_for(version="2") == []
    assert ids_for(enable="1") == [ids[1]] == ids_for(enable=1)
    assert ids_for(type=0) == ids and ids_for(type="1") == []
    assert ids_for(bin_id="0") == ids and ids_for(bin_id=0) == ids
    assert ids_for(api_key=tenant.api_key) == ids and ids_for(api_key="x" * 32) == []
    assert ids_for(device_id=macs[2].lower()) == [ids[2]]
    assert ids_for(device_id=colon_mac(macs[2])) == [ids[2]]
    assert ids_for(device_id="not a mac") == []
    assert ids_for(name="", version="", device_id="") == ids  # empty filters are ignored
    assert ids_for(version="2.0", enable="0") == [ids[2]]


def test_list_pages_from_one_and_counts_every_match(server: Server) -> None:
    tenant = new_tenant(server)
    for _ in range(5):
        add_device(server, tenant, random_mac())
    everything = [row["id"] for row in listed(server, tenant)["data"]]
    pages = [listed(server, tenant, page=page, limit="2") for page in ("1", 2, "3", 4)]
    assert [[row["id"] for row in doc["data"]] for doc in pages] == [
        everything[0:2], everything[2:4], everything[4:], []]
    assert {doc["totalNumber"] for doc in pages} == {5}
    assert listed(server, tenant, limit=9999)["totalNumber"] == 5


async def test_is_online_follows_live_connections_of_any_kind(server: Server) -> None:
    tenant = new_tenant(server)
    mac, other_mac = random_mac(), random_mac()
    token = server.register(mac)  # the same MAC through EzData first: one device
    add_device(server, tenant, mac)
    add_device(server, tenant, other_mac)
    assert listed(server, tenant)["totalNumber"] == 2
    assert listed(server, tenant, is_online="1")["totalNumber"] == 0

    ezdata = await WsDevice.connect(server.ws_url, token)
    row = wait_online(server, tenant, mac, "1")
    assert [r["id"] for r in listed(server, tenant, is_online=1)["data"]] == [row["id"]]
    firmware = await Firmware.connect(server, mac, tenant.api_key)
    await ezdata.close()
    status = f"{server.url}/api/v1/devices/{token}/status"
    eventually(lambda: httpx.get(status).json()["data"]["transports"] == ["espai-websocket"],
               "the EzData socket's close taken in")
    assert listed(server, tenant, device_id=mac)["data"][0]["is_online"] == "1"
    assert [r["device_id"] for r in listed(server, tenant, is_online="0")["data"]] == [
        colon_mac(other_mac)]
    await firmware.close()
    wait_online(server, tenant, mac, "0")
    assert listed(server, tenant, is_online="1")["totalNumber"] == 0


# update ------------------------------------------------------------------------------------------

async def test_update_answers_what_changed_and_pushes_local_data(server: Server,
                                                                 tenant: Tenant) -> None:
    mac = random_mac()
    add_device(server, tenant, mac)
    device_id = listed(server, tenant, device_id=mac)["data"][0]["id"]
    firmware = await Firmware.connect(server, mac, tenant.api_key)
    wait_online(server, tenant, mac, "1")
    body = {"id": device_id, "name": "小琅", "version": "1.22.34", "enable": 1,
            "wifi_ssid": "联域科技", "net_ip": "192.168.3.71", "city": None,
            "longitude": 113.2539, "latitude": "23.1181",
            "localData": {"wifi_ssid": "联域科技", "volume": 80, "muted": False, "x": None}}
    doc = api(server, "/devices/update", body, tenant.open_api_key)
    assert doc["success"] is True and doc["message"] == "修改成功"
    update_time = doc["data"].pop("update_time")
    assert doc["data"] == {"name": "小琅", "enable": "1", "net_ip": "192.168.3.71",
                           "longitude": "113.2539", "latitude": "23.1181"}
    assert await firmware.recv() == {"type": "set_local_data", "data": {
        "wifi_ssid": "联域科技", "volume": "80", "muted": "false", "x": ""}}
    row = listed(server, tenant, device_id=mac)["data"][0]
    assert row["update_time"] == update_time and row["name"] == "小琅" and row["enable"] == "1"

    again = api(server, "/devices/update", {"id": device_id, "name": "小琅", "enable": "1"},
                tenant.open_api_key)
    assert again["data"] == {"update_time": update_time}  # nothing changed
    await firmware.close()


def test_update_refuses_what_it_cannot_do_and_changes_nothing(server: Server, tenant: Tenant,
                                                              other: Tenant) -> None:
    mac = random_mac()
    add_device(server, tenant, mac)
    before = listed(server, tenant, device_id=mac)["data"][0]
    theirs = random_mac()
    add_device(server, other, theirs)
    their_id = listed(server, other, device_id=theirs)["data"][0]["id"]
    key = tenant.open_api_key
    failure(api(server, "/devices/update", {"name": "x"}, key), "缺失参数:id", 401)
    failure(api(server, "/devices/update", {"id": their_id, "name": "x"}, key),
            "设备未找到,请检查!", 404)
    failure(api(server, "/devices/update", {"id": "0" * 32, "name": "x"}, key),
            "设备未找到,请检查!", 404)
    failure(api(server, "/devices/update", {"id": 12, "name": "x"}, key),
            "参数类型错误:id 应为字符串", 400)
    failure(api(server, "/devices/update", {"id": before["id"], "name": {"a": 1}}, key),
            "参数类型错误:name 应为字符串或数字", 400)
    failure(api(server, "/devices/update", {"id": before["id"], "enable": True}, key),
            "参数类型错误:enable 应为字符串或数字", 400)
    failure(api(server, "/devices/update", {"id": before["id"], "name": "y", "enable": "2"},
                key), "参数错误:enable 只能是 0 或 1", 400)
    failure(api(server, "/devices/update", {"id": before["id"], "name": "n" * 129}, key),
            "参数错误:name 长度不能超过 128 个字符", 400)
    failure(api(server, "/devices/update", {"id": before["id"], "localData": ["a"]}, key),
            "参数类型错误:localData 应为 JSON 对象", 400)
    failure(api(server, "/devices/update", [{"id": before["id"]}], key),
            "参数格式错误:请求体应为 JSON 对象", 400)
    assert listed(server, tenant, device_id=mac)["data"][0] == before
    assert listed(server, other, device_id=theirs)["data"][0]["name"] is None


# del and unbind ----------------------------------------------------------------------------------

async def test_del_unbinds_all_or_nothing_and_tells_the_device(server: Server,
                                                               tenant: Tenant,
                                                               other: Tenant) -> None:
    macs = [random_mac(), random_mac()]
    for mac in macs:
        add_device(server, tenant, mac)
    ids = [listed(server, tenant, device_id=mac)["data"][0]["id"] for mac in macs]
    theirs = random_mac()
    add_device(server, other, theirs)
    their_id = listed(server, other, device_id=theirs)["data"][0]["id"]
    key = tenant.open_api_key

    failure(api(server, "/devices/del", [], key), "解绑失败,请传入需要解绑的数据", 400)
    failure(api(server, "/devices/del", None, key, raw=b""), "解绑失败,请传入需要解绑的数据", 400)
    failure(api(server, "/devices/del", {"id": ids[0]}, key),
            '参数格式错误:请求体应为数组,例如 [{"id": "..."}]', 400)
    failure(api(server, "/devices/del", [ids[0]], key),
            '参数格式错误:请求体应为数组,例如 [{"id": "..."}]', 400)
    failure(api(server, "/devices/del", [{"id": ids[0]}, {}], key), "缺失参数:id", 401)
    failure(api(server, "/devices/del", [{"id": ids[0]}, {"id": "f" * 32}], key),
            "设备未找到,请检查!", 404)
    failure(api(server, "/devices/del", [{"id": ids[0]}, {"id": their_id}], key),
            "设备未找到,请检查!", 404)
    assert listed(server, tenant, api_key=tenant.api_key)["totalNumber"] >= 2
    assert {row["id"] for row in listed(server, tenant)["data"]} >= set(ids)

    firmware = await Firmware.connect(server, macs[0], tenant.api_key)
    wait_online(server, tenant, macs[0], "1")
    doc = api(server, "/devices/del", [{"id": ids[0]}, {"id": ids[1]}], key)
    assert doc == {"success": True, "message": "解绑成功"}
    notice = await firmware.recv()
    assert notice["type"] == "error" and "设备已解绑" in notice["message"]
    assert await firmware.closed()
    assert not {row["id"] for row in listed(server, tenant)["data"]} & set(ids)
    assert listed(server, other, device_id=theirs)["totalNumber"] == 1

    again = await Firmware.connect(server, macs[0], tenant.api_key)  # unbound: refused
    assert "设备已解绑" in (await again.recv())["message"]
    assert await again.closed()


async def test_unbind_by_mac_from_the_agent(server: Server, tenant: Tenant,
                                            other: Tenant) -> None:
    mac = random_mac()
    add_device(server, tenant, mac)
    key = tenant.open_api_key
    firmware = await Firmware.connect(server, mac, tenant.api_key)
    wait_online(server, tenant, mac, "1")
    failure(api(server, "/devices/unbind", {"device_id": colon_mac(mac)}, key),
            "缺失参数:api_key", 401)
    failure(api(server, "/devices/unbind", {"api_key": tenant.api_key}, key),
            "缺失参数:device_id", 401)
    failure(api(server, "/devices/unbind", {"api_key": other.api_key,
                                            "device_id": colon_mac(mac)}, key),
            "超体不存在,请检查 api_key", 404)
    failure(api(server, "/devices/unbind", {"api_key": tenant.api_key,
                                            "device_id": colon_mac(random_mac())}, key),
            "设备未找到,请检查!", 404)
    failure(api(server, "/devices/unbind", {"api_key": tenant.api_key,
                                            "device_id": colon_mac(mac)}, other.open_api_key),
            "超体不存在,请检查 api_key", 404)
    assert listed(server, tenant, device_id=mac)["totalNumber"] == 1

    doc = api(server, "/devices/unbind", {"api_key": tenant.api_key,
                                          "device_id": mac.lower()}, key)
    assert doc == {"success": True, "message": "解绑成功"}
    assert "设备已解绑" in (await firmware.recv())["message"]
    assert await firmware.closed()
    assert listed(server, tenant, device_id=mac)["totalNumber"] == 0
    failure(api(server, "/devices/unbind", {"api_key": tenant.api_key,
                                            "device_id": colon_mac(mac)}, key),
            "设备未找到,请检查!", 404)


# keys and malformed requests ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/devices/list", "/devices/update", "/devices/del",
                                  "/devices/unbind", "/firmware/list"])
def test_a_missing_or_unknown_key_is_refused(server: Server, tenant: Tenant, path: str) -> None:
    failure(api(server, path, {}, None), "未授权:请在请求头 authorization 中传入 open_api_key",
            401)
    failure(api(server, path, {}, ""), "未授权:请在请求头 authorization 中传入 open_api_key",
            401)
    for key in ("0" * 32, "not a key", tenant.api_key, f"Bearer {'1' * 32}"):
        failure(api(server, path, {}, key), "未授权:open_api_key 无效", 401)


def test_a_bearer_prefix_is_accepted(server: Server, tenant: Tenant) -> None:
    assert listed_with(server, f"Bearer {tenant.open_api_key}")["success"] is True
    assert listed_with(server, f"bearer {tenant.open_api_key}")["success"] is True


def listed_with(server: Server, key: str) -> dict:
    reply = httpx.post(f"{server.url}/devices/list", json={}, headers={"authorization": key})
    return reply.json()


@pytest.mark.parametrize(("body", "message"), [
    (b'{"name": ', "参数格式错误:请求体不是合法的 JSON"),
    (b"name=x", "参数格式错误:请求体不是合法的 JSON"),
    (b'["x"]', "参数格式错误:请求体应为 JSON 对象"),
    (b'"x"', "参数格式错误:请求体应为 JSON 对象"),
    (b'{"name": ["x"]}', "参数类型错误:name 应为字符串或数字"),
    (b'{"enable": true}', "参数类型错误:enable 应为字符串或数字"),
    (b'{"limit": 100000}', "参数错误:limit 应为 1 到 9999 之间的整数"),
    (b'{"limit": "99999999999999999999999"}', "参数错误:limit 应为 1 到 9999 之间的整数"),
    (b'{"limit": 0}', "参数错误:limit 应为 1 到 9999 之间的整数"),
    (b'{"limit": "ten"}', "参数错误:limit 应为 1 到 9999 之间的整数"),
    (b'{"limit": 2.5}', "参数错误:limit 应为 1 到 9999 之间的整数"),
    (b'{"page": -1}', "参数错误:page 应为 1 到 1000000 之间的整数"),
    (b'{"page": 10000000}', "参数错误:page 应为 1 到 1000000 之间的整数"),
    (b'{"is_online": "2"}', "参数错误:is_online 只能是 0 或 1"),
])
def test_list_refuses_malformed_bodies_clearly(server: Server, tenant: Tenant, body: bytes,
                                               message: str) -> None:
    failure(api(server, "/devices/list", None, tenant.open_api_key, raw=body), message, 400)


def test_list_without_a_body_lists_everything(server: Server, tenant: Tenant) -> None:
    doc = api(server, "/devices/list", None, tenant.open_api_key, raw=b"")
    assert doc["success"] is True and doc["totalNumber"] == len(doc["data"])


def test_an_oversized_body_is_refused(server: Server, tenant: Tenant) -> None:
    body = b'{"name": "' + b"x" * (300 * 1024) + b'"}'
    failure(api(server, "/devices/list", None, tenant.open_api_key, raw=body),
            "参数错误:请求体过大", 413)


def test_wifi_pwd_can_be_masked_per_account(server: Server) -> None:
    tenant = new_tenant(server)
    mac = random_mac()
    add_device(server, tenant, mac)
    row = listed(server, tenant)["data"][0]
    assert row["wifi_pwd"] == "lykj987654321"
    cli(server, "accounts", "mask-wifi-pwd", "--account", tenant.email, "on")
    assert listed(server, tenant)["data"][0]["wifi_pwd"] == "******"
    doc = api(server, "/devices/update", {"id": row["id"], "wifi_pwd": "new-secret"},
              tenant.open_api_key)
    assert doc["data"]["wifi_pwd"] == "******"
    cli(server, "accounts", "mask-wifi-pwd", "--account", tenant.email, "off")
    assert listed(server, tenant)["data"][0]["wifi_pwd"] == "new-secret"
    assert "new-secret" not in server.log() and "lykj987654321" not in server.log()


# OpenAPI -----------------------------------------------------------------------------------------

def test_openapi_documents_the_endpoints_with_their_models(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ("/devices/list", "/devices/update", "/devices/del", "/devices/unbind",
                 "/devices/add", "/firmware/upload"):
        operation = paths[path]["post"]
        assert "requestBody" in operation and "200" in operation["responses"]
    for path in ("/sdk/get_server_info_by_api_key", "/sdk/query_new_ota", "/sdk/position"):
        assert "get" in paths[path]
    assert {p["name"] for p in paths["/sdk/query_new_ota"]["get"]["parameters"]} == {
        "version", "bin_id", "is_official"}
    assert paths["/devices/list"]["post"]["security"] == [{"open_api_key": []}]
    schemas = spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["open_api_key"]["name"] == "authorization"
    assert set(schemas["DeviceRecord"]["properties"]) == {*SEED_RECORD_KEYS, "battery"}
    assert schemas["DeviceDeleteRequest"]["type"] == "array"
    assert "localData" in schemas["DeviceUpdateRequest"]["properties"]
    assert schemas["DeviceUpdateRequest"]["required"] == ["id"]
    list_reply = paths["/devices/list"]["post"]["responses"]["200"]["content"]
    refs = {ref["$ref"] for ref in list_reply["application/json"]["schema"]["oneOf"]}
    assert refs == {"#/components/schemas/DeviceListResponse", "#/components/schemas/Failure"}


def test_docs_page_works_offline(server: Server) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html.replace(server.url, "") and "https://" not in html
    assert "<noscript>" in html and "POST /devices/list" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/static/{asset}" in html
        reply = httpx.get(f"{server.url}/docs/static/{asset}")
        assert reply.status_code == 200 and len(reply.content) > 10_000
