"""The console's ESP-AI pages: agents made, edited, re-keyed and deleted; firmware images uploaded
and withdrawn; each account sees and changes only its own."""

from __future__ import annotations

import html
import re

import httpx
from support.console_client import ConsoleUser
from support.server import Server


def _agents_page(user: ConsoleUser) -> str:
    return html.unescape(user.get("/console/agents").text)


def _agent_ids(page: str) -> list[str]:
    return re.findall(r'data-agent="([0-9a-f]{32})"', page)


def _server_info(server: Server, api_key: str) -> dict[str, object]:
    reply = httpx.get(f"{server.url}/sdk/get_server_info_by_api_key", params={"api_key": api_key})
    doc: dict[str, object] = reply.json()
    return doc


def test_agents_are_made_edited_rekeyed_and_deleted(server: Server) -> None:
    user = ConsoleUser.sign_up(server)
    made = user.post("/console/agents/add", name="<b>琳琅</b>", server_url="ws://10.0.0.5:8088/v1")
    assert user.flash(made).startswith("Agent <b>琳琅</b> made")
    page = user.get("/console/agents").text
    assert "<b>琳琅</b>" not in page and "&lt;b&gt;琳琅&lt;/b&gt;" in page  # shown as text
    [agent_id] = _agent_ids(page)
    [api_key] = re.findall(r'class="secret agent-key">([0-9a-f]{32})<', page)
    assert _server_info(server, api_key)["data"] == {"ip": "10.0.0.5", "port": 8088,
                                                     "protocol": "http", "path": "/v1"}

    saved = user.post(f"/console/agents/{agent_id}/edit", name="Lin",
                      server_url="wss://voice.example.org/ai")
    assert user.flash(saved) == "Agent Lin saved."
    assert _server_info(server, api_key)["data"] == {"ip": "voice.example.org", "port": 443,
                                                     "protocol": "https", "path": "/ai"}
    refused = user.post(f"/console/agents/{agent_id}/edit", name="", server_url="ftp://x")
    assert "agents" in refused.headers["location"]
    assert user.flash(refused) and user.get("/console/agents").text.count("Lin") >= 1

    rekeyed = user.post(f"/console/agents/{agent_id}/key")
    assert user.flash(rekeyed).startswith("New api_key for Lin")
    assert _server_info(server, api_key)["success"] is False
    [fresh] = re.findall(r'class="secret agent-key">([0-9a-f]{32})<', _agents_page(user))
    assert fresh != api_key and _server_info(server, fresh)["success"] is True

    deleted = user.post(f"/console/agents/{agent_id}/delete")
    assert user.flash(deleted).startswith("Agent deleted")
    assert _agent_ids(user.get("/console/agents").text) == []
    assert _server_info(server, fresh)["success"] is False


def test_firmware_uploaded_in_the_console_is_offered_to_devices(server: Server) -> None:
    user = ConsoleUser.sign_up(server)
    user.post("/console/agents/add", name="ota", server_url="")
    [api_key] = re.findall(r'class="secret agent-key">([0-9a-f]{32})<', _agents_page(user))
    image = b"\xe9" + bytes(range(256)) * 40
    uploaded = user.post("/console/firmware/upload", bin_id="console-bin", version="2.1",
                         files={"file": ("fw.bin", image, "application/octet-stream")})
    assert user.flash(uploaded).startswith("Firmware console-bin 2.1 uploaded")
    ota = httpx.get(f"{server.url}/sdk/query_new_ota",
                    params={"version": "2.0", "bin_id": "console-bin",
                            "api_key": api_key}).json()
    assert ota["success"] is True and ota["data"]["latest"] is False
    assert httpx.get(ota["data"]["bin_url"]).content == image
    page = user.get("/console/agents").text
    assert ota["data"]["bin_url"] in html.unescape(page)
    [firmware_id] = re.findall(r'/console/firmware/([0-9a-f]{32})/delete', page)
    missing = user.post("/console/firmware/upload", bin_id="console-bin", version="3")
    assert user.flash(missing) == "Choose a firmware file to upload."

    withdrawn = user.post(f"/console/firmware/{firmware_id}/delete")
    assert user.flash(withdrawn) == "Firmware console-bin 2.1 deleted."
    after = httpx.get(f"{server.url}/sdk/query_new_ota",
                      params={"version": "2.0", "bin_id": "console-bin",
                              "api_key": api_key}).json()
    assert after["data"] == {"latest": True, "bin_url": ""}


def test_another_account_cannot_touch_an_agent_or_an_image(server: Server) -> None:
    owner, stranger = ConsoleUser.sign_up(server), ConsoleUser.sign_up(server)
    owner.post("/console/agents/add", name="mine", server_url="")
    owner.post("/console/firmware/upload", bin_id="owned", version="1",
               files={"file": ("a.bin", b"\x01" * 64, "application/octet-stream")})
    page = owner.get("/console/agents").text
    [agent_id] = _agent_ids(page)
    [firmware_id] = re.findall(r'/console/firmware/([0-9a-f]{32})/delete', page)
    stranger.get("/console/agents")
    for path in (f"/console/agents/{agent_id}/edit", f"/console/agents/{agent_id}/key",
                 f"/console/agents/{agent_id}/delete", f"/console/firmware/{firmware_id}/delete"):
        assert stranger.flash(stranger.post(path, name="taken", server_url="")) != ""
    assert "mine" not in stranger.get("/console/agents").text
    again = owner.get("/console/agents").text
    assert _agent_ids(again) == [agent_id] and firmware_id in again


def test_wifi_pwd_masking_is_chosen_in_the_console(server: Server) -> None:
    user = ConsoleUser.sign_up(server)
    assert 'id="mask-wifi-pwd" checked' not in user.get("/console/agents").text
    assert user.flash(user.post("/console/agents/wifi-pwd", mask="on")) == \
        "wifi_pwd is hidden as ****** in API results."
    assert 'id="mask-wifi-pwd" checked' in user.get("/console/agents").text
    assert user.flash(user.post("/console/agents/wifi-pwd")) == "wifi_pwd is shown in API results."
