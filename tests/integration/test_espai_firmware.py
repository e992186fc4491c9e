"""The ESP-AI firmware's side (spec section 4): binding, the sdk calls, firmware images and OTA,
the `/connect_espai_node` socket, one record for EzData and ESP-AI, and the whole flow."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from support.clients import WsDevice
from support.espai import (
    Firmware,
    Tenant,
    add_device,
    api,
    colon_mac,
    listed,
    new_tenant,
    wait_online,
)
from support.polling import eventually
from support.server import Server, random_mac

from devicecloud.store import migrate

IMAGE = bytes(range(256)) * 64


@pytest.fixture(scope="module")
def tenant(server: Server) -> Tenant:
    return new_tenant(server, server_url="ws://voice.example.org:8088/espai")


@pytest.fixture(scope="module")
def other(server: Server) -> Tenant:
    return new_tenant(server)


def upload(server: Server, tenant: Tenant, bin_id: str, version: str,
           data: bytes = IMAGE, name: str = "firmware.bin") -> dict:
    reply = httpx.post(f"{server.url}/firmware/upload", data={"bin_id": bin_id, "version": version},
                       files={"file": (name, data, "application/octet-stream")},
                       headers={"authorization": tenant.open_api_key})
    assert reply.status_code == 200
    doc: dict = reply.json()
    return doc


def ota(server: Server, version: str, bin_id: str, api_key: str) -> dict:
    """The update check of a firmware that sends its agent's api_key (the shared server has
    devices of many accounts on 127.0.0.1: its address alone names no account)."""
    reply = httpx.get(f"{server.url}/sdk/query_new_ota",
                      params={"version": version, "bin_id": bin_id, "is_official": "0",
                              "api_key": api_key})
    assert reply.status_code == 200
    doc: dict = reply.json()
    return doc


# /devices/add ------------------------------------------------------------------------------------

def test_add_binds_once_and_again_for_the_same_account(server: Server, tenant: Tenant,
                                                       other: Tenant) -> None:
    mac = random_mac()
    first = add_device(server, tenant, mac)
    assert first["success"] is True and first["message"] == "设备绑定成功"
    assert first["data"]["device_id"] == colon_mac(mac)
    assert first["data"]["equipment_id"] == tenant.agent_id
    again = add_device(server, tenant, mac.lower(), version="1.22.35")
    assert again["success"] is True and again["data"]["id"] == first["data"]["id"]
    assert again["data"]["version"] == "1.22.35"
    refused = add_device(server, other, mac)
    assert refused["success"] is False and "不可以重复绑定" in refused["message"]
    assert listed(server, other, device_id=mac)["totalNumber"] == 0
    assert listed(server, tenant, device_id=mac)["totalNumber"] == 1


def test_add_refuses_what_it_cannot_bind(server: Server, tenant: Tenant) -> None:
    url = f"{server.url}/devices/add"
    assert httpx.post(url, json={"api_key": tenant.api_key}).json() == {
        "success": False, "message": "缺失参数:device_id", "code": 401}
    assert httpx.post(url, json={"device_id": colon_mac(random_mac())}).json() == {
        "success": False, "message": "缺失参数:api_key", "code": 401}
    assert httpx.post(url, json={"device_id": colon_mac(random_mac()),
                                 "api_key": "0" * 32}).json() == {
        "success": False, "message": "超体不存在,请检查 api_key", "code": 401}
    assert httpx.post(url, json={"device_id": "nonsense", "api_key": tenant.api_key}).json() == {
        "success": False, "message": "参数错误:device_id 不是有效的 MAC 地址", "code": 400}
    assert httpx.post(url, content=b"{").json()["message"] == "参数格式错误:请求体不是合法的 JSON"


async def test_an_ezdata_device_and_an_espai_device_with_one_mac_are_one(
        server: Server, tenant: Tenant) -> None:
    mac = random_mac()
    token = server.register(mac)
    ezdata = await WsDevice.connect(server.ws_url, token)
    assert add_device(server, tenant, mac)["success"] is True
    bound = await ezdata.recv_json()
    assert bound["cmd"] == 106 and bound["body"]["userName"] == "琳琅"
    row = wait_online(server, tenant, mac, "1")
    assert listed(server, tenant, device_id=mac)["totalNumber"] == 1
    assert server.register(mac) == token  # registering again changes nothing
    assert listed(server, tenant, device_id=mac)["data"][0]["id"] == row["id"]
    await ezdata.close()
    wait_online(server, tenant, mac, "0")


# /sdk --------------------------------------------------------------------------------------------

def test_server_info_by_api_key(server: Server, tenant: Tenant, other: Tenant) -> None:
    url = f"{server.url}/sdk/get_server_info_by_api_key"
    assert httpx.get(url, params={"api_key": tenant.api_key}).json() == {
        "success": True, "message": "请求成功",
        "data": {"ip": "voice.example.org", "port": 8088, "protocol": "http", "path": "/espai"}}
    assert httpx.get(url, params={"api_key": other.api_key}).json() == {
        "success": False, "message": "该超体未配置语音服务地址", "code": 404}
    unknown = httpx.get(url, params={"api_key": "0" * 32}).json()
    assert unknown["message"] == "超体不存在,请检查 api_key"
    assert httpx.get(url).json() == {"success": False, "message": "缺失参数:api_key", "code": 401}


def test_position_answers_blanks_without_a_database(server: Server) -> None:
    doc = httpx.get(f"{server.url}/sdk/position").json()
    assert doc == {"success": True, "message": "请求成功", "data": {
        "ip": "127.0.0.1", "country_name": "", "region": "", "city": "", "latitude": "",
        "longitude": ""}}


# Firmware images and OTA -------------------------------------------------------------------------

def test_firmware_upload_and_ota(server: Server, tenant: Tenant, other: Tenant) -> None:
    bin_id = f"bin-{random_mac()}"
    assert ota(server, "1.0", bin_id, tenant.api_key) == {
        "success": True, "message": "请求成功", "data": {"latest": True, "bin_url": ""}}
    first = upload(server, tenant, bin_id, "1.0")
    assert first["success"] is True and first["message"] == "上传成功"
    assert first["data"]["size"] == len(IMAGE) and first["data"]["file_name"] == "firmware.bin"
    assert ota(server, "1.0", bin_id, tenant.api_key)["data"] == {
        "latest": True, "bin_url": first["data"]["bin_url"]}
    second = upload(server, tenant, bin_id, "1.1", IMAGE[::-1], "fw v1.1.bin")
    offer = ota(server, "1.0", bin_id, tenant.api_key)["data"]
    assert offer == {"latest": False, "bin_url": second["data"]["bin_url"]}
    assert offer["bin_url"].startswith(server.url + "/firmware/")
    download = httpx.get(offer["bin_url"])
    assert download.status_code == 200 and download.content == IMAGE[::-1]
    assert ota(server, "1.1", bin_id, tenant.api_key)["data"]["latest"] is True

    theirs = upload(server, other, bin_id, "9.9")  # a bin_id is each account's own
    assert theirs["success"] is True
    assert ota(server, "1.1", bin_id, tenant.api_key)["data"]["latest"] is True
    assert ota(server, "1.1", bin_id, other.api_key)["data"] == {
        "latest": False, "bin_url": theirs["data"]["bin_url"]}
    exists = upload(server, tenant, bin_id, "1.1")
    assert exists == {"success": False, "message": "该固件的此版本已存在", "code": 409}
    bad = upload(server, tenant, "no spaces please", "1.2")
    assert bad["success"] is False and bad["code"] == 400
    empty = upload(server, tenant, bin_id, "1.2", b"")
    assert empty == {"success": False, "message": "参数错误:固件文件为空", "code": 400}

    mine = api(server, "/firmware/list", {}, tenant.open_api_key)
    assert [image["version"] for image in mine["data"]
            if image["bin_id"] == bin_id] == ["1.0", "1.1"]
    assert [image["version"] for image in api(server, "/firmware/list", {},
                                              other.open_api_key)["data"]] == ["9.9"]
    assert api(server, "/firmware/del", [{"id": second["data"]["id"]}], other.open_api_key) == {
        "success": False, "message": "固件未找到,请检查!", "code": 404}
    assert api(server, "/firmware/del", [{"id": second["data"]["id"]}],
               tenant.open_api_key)["success"] is True
    assert ota(server, "1.0", bin_id, tenant.api_key)["data"] == {
        "latest": True, "bin_url": first["data"]["bin_url"]}
    gone = httpx.get(second["data"]["bin_url"])
    assert gone.status_code == 404 and gone.json()["message"] == "固件未找到,请检查!"
    wrong_name = first["data"]["bin_url"].rsplit("/", 1)[0] + "/other.bin"
    assert httpx.get(wrong_name).status_code == 404


def test_firmware_upload_needs_a_key_and_a_file(server: Server, tenant: Tenant) -> None:
    url = f"{server.url}/firmware/upload"
    assert httpx.post(url, data={"bin_id": "x", "version": "1"},
                      files={"file": ("a.bin", b"x")}).json()["code"] == 401
    assert httpx.post(url, data={"bin_id": "x", "version": "1"},
                      headers={"authorization": tenant.open_api_key}).json() == {
        "success": False, "message": "缺失参数:file", "code": 401}


# The firmware's WebSocket ------------------------------------------------------------------------

async def test_the_socket_fills_the_record(server: Server, tenant: Tenant) -> None:
    mac = random_mac()
    add_device(server, tenant, mac)
    firmware = await Firmware.connect(server, mac, tenant.api_key)
    wait_online(server, tenant, mac, "1")
    await firmware.send({"api_key": tenant.api_key, "device_id": colon_mac(mac),
                         "type": "upload_device_info", "data": {
                             "api_key": tenant.api_key, "version": "Fruina.V3", "bin_id": "0",
                             "device_id": colon_mac(mac), "wifi_ssid": "home",
                             "wifi_pwd": "pw-123", "net_ip": "192.168.3.71",
                             "nation": "China", "province": "Guangdong", "city": "Guangzhou",
                             "latitude": "23.1181", "longitude": 113.2539}})
    await firmware.send({"type": "battery", "data": 87.4, "device_id": colon_mac(mac)})
    await firmware.send({"type": "get_local_data_res", "data": {"ext1": tenant.api_key}})
    await firmware.send({"type": "ota_update_error", "device_id": colon_mac(mac)})
    await firmware.send({"type": "something new"})
    await firmware.ws.send("not json")
    await firmware.ws.send(b"\x00\x01")

    def with_battery() -> Any:
        row = listed(server, tenant, device_id=mac)["data"][0]
        return row if row["battery"] is not None else None

    row = await asyncio.to_thread(eventually, with_battery, "the battery recorded", 2.5)
    assert row["battery"] == 87 and row["is_online"] == "1"
    assert (row["version"], row["wifi_ssid"], row["wifi_pwd"], row["net_ip"]) == (
        "Fruina.V3", "home", "pw-123", "192.168.3.71")
    assert (row["nation"], row["province"], row["city"], row["latitude"], row["longitude"]) == (
        "China", "Guangdong", "Guangzhou", "23.1181", "113.2539")
    await firmware.close()
    assert "pw-123" not in server.log()


@pytest.mark.parametrize("query", ["device_type=hardware",
                                   "device_id=AA:BB:CC:DD:EE:FF&api_key=",
                                   "device_id=nonsense&api_key=x"])
async def test_the_socket_refuses_incomplete_logins(server: Server, query: str) -> None:
    from websockets.asyncio.client import connect

    ws = await connect(f"ws://127.0.0.1:{server.http_port}/connect_espai_node?{query}")
    firmware = Firmware(ws)
    doc = await firmware.recv()
    assert doc["type"] == "error" and doc["message"]
    assert await firmware.closed()


async def test_a_device_of_another_account_is_told_it_is_unbound(server: Server, tenant: Tenant,
                                                                  other: Tenant) -> None:
    mac = random_mac()
    add_device(server, tenant, mac)
    firmware = await Firmware.connect(server, mac, other.api_key)
    assert (await firmware.recv()) == {"type": "error", "message": "设备已解绑,请重新配网绑定设备"}
    assert await firmware.closed()
    assert listed(server, tenant, device_id=mac)["data"][0]["is_online"] == "0"


# The whole flow, as the firmware and a third-party server go through it --------------------------

async def test_firmware_flow_end_to_end(server: Server, tenant: Tenant) -> None:
    mac = random_mac()
    bin_id = f"flow-{mac}"
    upload(server, tenant, bin_id, "2.0")
    # 1. Wi-Fi setup page: where is the voice server, then bind.
    info = httpx.get(f"{server.url}/sdk/get_server_info_by_api_key",
                     params={"api_key": tenant.api_key}).json()
    assert info["success"] is True and info["data"]["port"] == 8088
    assert add_device(server, tenant, mac, bin_id=bin_id, version="1.0")["success"] is True
    # 2. After the reboot: the business socket, the position, the device's report.
    firmware = await Firmware.connect(server, mac, tenant.api_key)
    position = httpx.get(f"{server.url}/sdk/position").json()["data"]
    await firmware.send({"type": "upload_device_info", "api_key": tenant.api_key,
                         "device_id": colon_mac(mac), "data": {
                             "version": "1.0", "bin_id": bin_id, "net_ip": position["ip"],
                             "nation": position["country_name"]}})
    await firmware.send({"type": "battery", "data": 55})
    # 3. The update check offers the newer image, which downloads.
    offer = ota(server, "1.0", bin_id, tenant.api_key)["data"]
    assert offer["latest"] is False
    assert httpx.get(offer["bin_url"]).content == IMAGE
    # 4. The third party sees it online and sets its local data; the device is told.
    row = wait_online(server, tenant, mac, "1")
    assert row["bin_id"] == bin_id and row["net_ip"] == "127.0.0.1"
    doc = api(server, "/devices/update", {"id": row["id"], "localData": {"ext2": 0.6}},
              tenant.open_api_key)
    assert doc["success"] is True
    assert await firmware.recv() == {"type": "set_local_data", "data": {"ext2": "0.6"}}
    # 5. Unbinding tells the device, which wipes its key; with it gone it cannot come back.
    assert api(server, "/devices/unbind", {"api_key": tenant.api_key,
                                           "device_id": colon_mac(mac)},
               tenant.open_api_key)["message"] == "解绑成功"
    assert "设备已解绑" in (await firmware.recv())["message"]
    assert await firmware.closed()
    assert listed(server, tenant, device_id=mac)["totalNumber"] == 0
    # 6. Set up again, it binds again.
    assert add_device(server, tenant, mac)["success"] is True
    assert listed(server, tenant, device_id=mac)["data"][0]["id"] == row["id"]


# Storage -----------------------------------------------------------------------------------------

def test_migrations_upgrade_a_database_with_devices(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0003")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.executemany("INSERT INTO devices (mac, token, device_type, created_at, updated_at) "
                         "VALUES (?, ?, '', 1, 1)", [("aabbccddeeff", "a" * 32),
                                                     ("aabbccddee00", "b" * 32)])
    command.upgrade(config, "head")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        head = ScriptDirectory.from_config(config).get_current_head()
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)
        ids = [row[0] for row in conn.execute("SELECT public_id FROM devices")]
        enable = {row[0] for row in conn.execute("SELECT enable FROM devices")}
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids) and enable == {"0"}
    command.downgrade(config, "0003")
    command.upgrade(config, "head")
