"""The EspAi methods a console calls (agents, pushes), in process, with the firmware's socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.polling import eventually
from support.server import database_url

from devicecloud.app import create_app
from devicecloud.config import Settings
from devicecloud.core.errors import InvalidRequest, NotFound
from devicecloud.core.models import Account
from devicecloud.web.services import Services

MAC = "FC:01:2C:DB:14:31"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    data_dir = tmp_path / "data"
    app = create_app(Settings(data_dir=data_dir, database_url=database_url(data_dir), mqtt_port=0))
    with TestClient(app, base_url="http://cloud.test") as client:
        yield client


def call(client: TestClient, method: Any, *args: Any, **kwargs: Any) -> Any:
    assert client.portal is not None
    return client.portal.call(lambda: method(*args, **kwargs))


def test_agents_pushes_and_local_data(client: TestClient) -> None:
    running: Services = client.app_state["services"]
    espai = running.espai
    account: Account = call(client, running.accounts.create,
                            "owner@example.com", "password-1", "Owner", "")
    agent = call(client, espai.agents.create, account, "  小助手  ", "https://voice.test/v1")
    assert agent.name == "小助手" and len(agent.api_key) == 32 and agent.account_id == account.id
    assert [a.id for a in call(client, espai.agents.of, account)] == [agent.id]
    with pytest.raises(InvalidRequest):
        call(client, espai.agents.create, account, "", "")
    with pytest.raises(InvalidRequest):
        call(client, espai.agents.create, account, "x", "ftp://voice.test")
    info = client.get("/sdk/get_server_info_by_api_key", params={"api_key": agent.api_key})
    assert info.json()["data"] == {"ip": "voice.test", "port": 443, "protocol": "https",
                                   "path": "/v1"}
    renamed = call(client, espai.agents.update, account, agent.id, name="新名字",
                   server_url="http://10.0.0.2:8088")
    assert renamed.name == "新名字"
    assert call(client, espai.agents.get, account, agent.id).server_url == "http://10.0.0.2:8088"

    assert client.post("/devices/add", json={"device_id": MAC, "api_key": agent.api_key,
                                             "bin_id": "bin-a", "version": "1"}).json()["success"]
    rows, total = call(client, espai.devices.query, account, {})
    assert total == 1
    device_id = rows[0]["id"]
    upload = client.post("/firmware/upload", data={"bin_id": "bin-a", "version": "2"},
                         files={"file": ("a.bin", b"\x01" * 100)},
                         headers={"authorization": account.open_api_key}).json()
    assert upload["success"] is True

    query = f"device_type=hardware&device_id={MAC}&version=1&api_key={agent.api_key}"
    with client.websocket_connect(f"/connect_espai_node?{query}") as ws:
        # The socket is open; wait until the device has joined.
        eventually(lambda: call(client, espai.devices.query, account, {"is_online": "1"})[1] == 1,
                   "the device joined", every=0.02)
        call(client, espai.devices.send_message, account, device_id, "你好")
        assert ws.receive_json() == {"type": "message", "message": "你好"}
        call(client, espai.devices.ask_local_data, account, device_id)
        assert ws.receive_json() == {"type": "get_local_data"}
        ws.send_json({"type": "get_local_data_res", "data": {"ext2": "0.6", "ext3": "1"}})
        image = call(client, espai.firmware.push, account, device_id, "http://cloud.test")
        assert ws.receive_json() == {"type": "ota_update", "url": upload["data"]["bin_url"]}
        assert image.version == "2"
        def with_local_data() -> Any:
            stored = call(client, espai.devices.get, account, device_id)
            return stored if stored.local_data is not None else None

        stored = eventually(with_local_data, "the local data stored", every=0.02)
        assert stored.local_data == {"ext2": "0.6", "ext3": "1"}
        assert call(client, espai.devices.record, stored)["is_online"] == "1"
        assert call(client, espai.devices.query, account, {})[0][0]["is_online"] == "1"

        old_key = agent.api_key
        fresh = call(client, espai.agents.regenerate_key, account, agent.id)
        assert fresh.api_key != old_key
        gone = client.get("/sdk/get_server_info_by_api_key", params={"api_key": old_key})
        assert gone.json()["message"] == "超体不存在,请检查 api_key"

        call(client, espai.agents.delete, account, agent.id)
        assert ws.receive_json() == {"type": "error", "message": "设备已解绑,请重新配网绑定设备"}
    assert call(client, espai.devices.query, account, {}) == ([], 0)
    assert call(client, espai.agents.of, account) == []
    with pytest.raises(NotFound):
        call(client, espai.agents.get, account, agent.id)
    with pytest.raises(NotFound):
        call(client, espai.devices.send_message, account, device_id, "x")
