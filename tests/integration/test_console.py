"""The web console over plain HTTP: accounts, sessions, CSRF, throttling, binding, edits pushed
to devices over WebSocket and MQTT, and one account never seeing another's devices."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.console_client import PASSWORD, ConsoleUser
from support.mqtt_clients import PahoDevice
from support.server import Server, random_mac
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devicecloud.web.console.qr import qr_png

PAIR_CODE = r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own, so that its login throttles count only these tests."""
    instance = Server(tmp_path_factory.mktemp("console") / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()


def set_cookie(reply: httpx.Response) -> str:
    return reply.headers.get("set-cookie", "")


# Accounts, sessions, CSRF ---------------------------------------------------------------------

def test_session_cookie_is_http_only_same_site_lax_and_signed(console_server: Server) -> None:
    user = ConsoleUser(console_server)
    cookie = set_cookie(user.get("/console/login"))
    assert "devicecloud_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    tampered = httpx.get(f"{console_server.url}/console/devices", follow_redirects=False,
                         cookies={"devicecloud_session": cookie.split(";")[0].split("=", 1)[1]
                                  .replace(".", "x.", 1)})
    assert tampered.status_code == 303 and tampered.headers["location"].startswith(
        "/console/login")


def test_every_form_needs_the_csrf_token(console_server: Server) -> None:
    user = ConsoleUser(console_server)
    user.get("/console/signup")
    email = f"{secrets.token_hex(5)}@example.com"
    for csrf in ("", "forged"):
        reply = user.http.post("/console/signup", data={"csrf": csrf, "email": email,
                                                        "password": PASSWORD})
        assert reply.status_code == 403 and "This form has expired" in reply.text
    assert user.post("/console/signup", email=email, password=PASSWORD).status_code == 303
    user.get("/console/devices")
    token = console_server.register()
    assert user.http.post("/console/devices/add", data={"token": token}).status_code == 403
    assert user.http.post("/console/logout", data={}).status_code == 403
    assert user.get("/console/devices").status_code == 200  # still logged in


def test_sign_up_profile_api_key_and_log_out(console_server: Server) -> None:
    user = ConsoleUser.sign_up(console_server, name="Ada")
    page = user.get("/console/account").text
    key = re.search(r'<code id="api-key" class="secret">([0-9a-f]{32})</code>', page)
    assert key is not None and "Ada" in page
    saved = user.post("/console/account", display_name="Ada L.", phone="+1 555 0100")
    assert user.flash(saved) == "Profile saved."
    page = user.get("/console/account").text
    assert 'value="Ada L."' in page and 'value="+1 555 0100"' in page
    assert "New open_api_key" in user.flash(user.post("/console/account/api-key"))
    new_key = re.search(r'<code id="api-key" class="secret">([0-9a-f]{32})</code>',
                        user.get("/console/account").text)
    assert new_key is not None and new_key.group(1) != key.group(1)
    assert user.flash(user.post("/console/logout")) == "You are logged out."
    after = user.get("/console/devices", follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/console/login")


def test_sign_up_errors_are_clear(console_server: Server) -> None:
    user = ConsoleUser.sign_up(console_server)
    other = ConsoleUser(console_server)
    other.get("/console/signup")
    taken = other.post("/console/signup", email=user.email.upper(), password=PASSWORD)
    assert taken.status_code == 409 and "An account with this email already exists." in taken.text
    short = other.post("/console/signup", email="new@example.com", password="short")
    assert short.status_code == 400 and "at least 8 characters" in short.text


def test_failed_logins_are_throttled_with_a_clear_message(console_server: Server) -> None:
    user = ConsoleUser.sign_up(console_server)
    user.post("/console/logout")
    user.get("/console/login")
    for _ in range(5):
        wrong = user.post("/console/login", email=user.email, password="not the password")
        assert wrong.status_code == 401 and "Wrong email or password." in wrong.text
    blocked = user.post("/console/login", email=user.email, password=PASSWORD)
    assert blocked.status_code == 429
    assert re.search(r"Too many failed log-ins\. Try again in 1[45] minutes\.", blocked.text)


def test_login_goes_back_to_where_it_was_asked_for_and_nowhere_else(
        console_server: Server) -> None:
    user = ConsoleUser.sign_up(console_server)
    user.post("/console/logout")
    asked = user.get("/console/account", follow_redirects=False)
    assert asked.headers["location"] == "/console/login?next=/console/account"
    user.get(asked.headers["location"])
    back = user.post("/console/login", email=user.email, password=PASSWORD,
                     next="/console/account")
    assert back.headers["location"] == "/console/account"
    user.get("/console/account")
    user.post("/console/logout")
    user.get("/console/login")
    away = user.post("/console/login", email=user.email, password=PASSWORD,
                     next="https://evil.example/")
    assert away.headers["location"] == "/console/devices"


def test_pages_carry_security_headers(console_server: Server) -> None:
    reply = httpx.get(f"{console_server.url}/console/login")
    policy = reply.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_secret_key_is_private_and_sessions_survive_a_restart(own_server: Server) -> None:
    own_server.start()
    mode = stat.S_IMODE(os.stat(own_server.data_dir / "secret.key").st_mode)
    assert mode == 0o600
    user = ConsoleUser.sign_up(own_server)
    assert own_server.stop() == 0
    own_server.start()
    assert user.get("/console/devices", follow_redirects=False).status_code == 200


def test_cookie_is_secure_when_served_over_https(own_server: Server) -> None:
    own_server.extra_args = ("--public-url", "https://cloud.example.org")
    own_server.start()
    assert "Secure" in set_cookie(httpx.get(f"{own_server.url}/console/login"))


# Binding ----------------------------------------------------------------------------------------

async def test_bind_by_token_pushes_106_and_a_device_belongs_to_one_account(
        console_server: Server) -> None:
    token = console_server.register()
    device = await WsDevice.connect(console_server.ws_url, token)
    ada = ConsoleUser.sign_up(console_server, name="Ada")
    bound = ada.bind(token.upper())
    assert bound.headers["location"] == f"/console/devices/{token}"
    push = await device.recv_json()
    assert push["cmd"] == 106 and push["code"] == 200
    assert push["body"] == {"deviceToken": token, "userName": "Ada"}
    assert token in ada.get("/console/devices").text
    bob = ConsoleUser.sign_up(console_server)
    assert "bound to another account" in bob.flash(bob.bind(token))
    assert "32 hexadecimal characters" in bob.flash(bob.bind("1234"))
    assert "No device has this token" in bob.flash(bob.bind("f" * 32))
    await device.close()


def test_another_accounts_device_is_not_found(console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    ada.post(f"/console/devices/{token}/fields/add", name="temp", type="number", value="1")
    bob = ConsoleUser.sign_up(console_server)
    unknown = "0" * 32
    assert token not in bob.get("/console/devices").text
    for path in (f"/console/devices/{token}", f"/console/devices/{token}/history?name=temp"):
        mine, foreign = bob.get(path.replace(token, unknown)), bob.get(path)
        assert foreign.status_code == mine.status_code == 404
        assert foreign.text == mine.text.replace(unknown, token)
    for action in ("fields/add", "fields/edit", "fields/delete", "release"):
        reply = bob.post(f"/console/devices/{token}/{action}", name="temp", type="number",
                         value="2")
        assert reply.status_code == 404, action
    record = httpx.get(f"{console_server.url}/api/v2/{token}/dataByKey/temp").json()["data"]
    assert record["value"] == 1
    assert token in ada.get("/console/devices").text


async def handshakes_refused(address: str, *attempts: tuple[str, str]) -> None:
    """Each (cookie, origin) attempt's WebSocket handshake is refused."""
    for cookie, origin in attempts:
        with pytest.raises(InvalidStatus):
            async with connect(address, additional_headers={"Cookie": cookie},
                               origin=origin):
                pass


async def test_live_feed_is_for_the_owner_on_this_site_only(console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    bob = ConsoleUser.sign_up(console_server)
    address = f"ws://127.0.0.1:{console_server.http_port}/console/live/{token}"
    await handshakes_refused(address, (bob.cookie_header(), console_server.url),
                             ("", console_server.url), (ada.cookie_header(), "http://evil.example"))
    async with connect(address, additional_headers={"Cookie": ada.cookie_header()},
                       origin=console_server.url) as feed:
        snapshot = json.loads(await asyncio.wait_for(feed.recv(), 2))
        assert snapshot["type"] == "snapshot" and snapshot["records"] == []
        assert snapshot["status"]["online"] is False
        device = await WsDevice.connect(console_server.ws_url, token)
        status = json.loads(await asyncio.wait_for(feed.recv(), 2))
        assert status["status"]["online"] is True
        assert status["status"]["transports"] == ["websocket"]
        await device.request(100, name="temp", value=21.5)
        change = json.loads(await asyncio.wait_for(feed.recv(), 2))
        assert change["type"] == "field" and change["change"] == "added"
        assert change["record"]["name"] == "temp" and change["record"]["value"] == 21.5
        await device.close()


async def test_bind_url_binds_when_opened_directly_and_asks_when_linked(
        console_server: Server) -> None:
    token = console_server.register()
    device = await WsDevice.connect(console_server.ws_url, token)
    anonymous = httpx.get(f"{console_server.url}/console/bind/{token}")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/console/login?next=/console/bind/{token}"
    ada = ConsoleUser.sign_up(console_server, name="Ada")
    linked = ada.get(f"/console/bind/{token}", headers={"Sec-Fetch-Site": "cross-site"})
    assert linked.status_code == 200 and "Bind this device" in linked.text
    assert token not in ada.get("/console/devices").text
    assert await device.before_marker() == [], "a linked bind page binds nothing"
    opened = ada.get(f"/console/bind/{token}", headers={"Sec-Fetch-Site": "none"})
    assert opened.status_code == 303 and opened.headers["location"] == f"/console/devices/{token}"
    push = await device.recv_json()
    assert push["cmd"] == 106 and push["body"] == {"deviceToken": token, "userName": "Ada"}
    bob = ConsoleUser.sign_up(console_server)
    confirmed = bob.post(f"/console/bind/{token}")
    assert confirmed.status_code == 409 and "bound to another account" in confirmed.text
    assert bob.get(f"/console/bind/{'0' * 32}").status_code == 404
    await device.close()


def test_qr_code_holds_the_bind_url(console_server: Server) -> None:
    token = console_server.register()
    reply = httpx.get(f"{console_server.url}/console/bind/{token}/qr.png")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert reply.content == qr_png(f"{console_server.url}/console/bind/{token}")
    assert httpx.get(f"{console_server.url}/console/bind/{'0' * 32}/qr.png").status_code == 404


async def test_pair_code_over_websocket_binds_once(console_server: Server) -> None:
    token = console_server.register()
    device = await WsDevice.connect(console_server.ws_url, token)
    first = await device.request(112)
    assert first["cmd"] == 112 and first["code"] == 200
    assert re.fullmatch(PAIR_CODE, first["body"]["pairCode"])
    code = (await device.request("112"))["body"]["pairCode"]
    ada = ConsoleUser.sign_up(console_server, name="Ada")
    if code != first["body"]["pairCode"]:
        stale = ada.post("/console/devices/pair", code=first["body"]["pairCode"])
        assert "unknown, used or expired" in ada.flash(stale)
    paired = ada.post("/console/devices/pair", code=code.replace("-", "").lower())
    assert paired.headers["location"] == f"/console/devices/{token}"
    push = await device.recv_json()
    assert push["cmd"] == 106 and push["body"]["userName"] == "Ada"
    bob = ConsoleUser.sign_up(console_server)
    assert "unknown, used or expired" in bob.flash(bob.post("/console/devices/pair", code=code))
    assert "8 letters and digits" in bob.flash(bob.post("/console/devices/pair", code="12ab"))
    await device.close()


async def test_pair_code_over_mqtt(console_server: Server) -> None:
    mac = random_mac()
    token = console_server.register(mac=mac)
    paho = await asyncio.to_thread(PahoDevice, console_server.mqtt_port, token, mac)
    try:
        answer = await asyncio.to_thread(paho.request, 112)
        assert answer["cmd"] == 112 and answer["code"] == 200
        code = answer["body"]["pairCode"]
        assert re.fullmatch(PAIR_CODE, code)
        ada = ConsoleUser.sign_up(console_server, name="Ada")
        ada.post("/console/devices/pair", code=code)
        push = await asyncio.to_thread(paho.next)
        assert push["cmd"] == 106 and push["body"] == {"deviceToken": token, "userName": "Ada"}
    finally:
        await asyncio.to_thread(paho.close)


def test_wrong_pair_codes_are_throttled(console_server: Server) -> None:
    user = ConsoleUser.sign_up(console_server)
    for _ in range(10):
        user.post("/console/devices/pair", code="0000-0000")
    assert "Too many wrong pairing codes" in user.flash(
        user.post("/console/devices/pair", code="0000-0001"))


def test_release_from_the_console(console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    assert "Device released" in ada.flash(ada.post(f"/console/devices/{token}/release"))
    assert token not in ada.get("/console/devices").text
    assert ada.get(f"/console/devices/{token}").status_code == 404
    bob = ConsoleUser.sign_up(console_server)
    assert bob.bind(token).headers["location"] == f"/console/devices/{token}"


# Fields -----------------------------------------------------------------------------------------

async def test_edits_push_109_107_108_over_websocket_and_mqtt(console_server: Server) -> None:
    mac = random_mac()
    token = console_server.register(mac=mac)
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    ws = await WsDevice.connect(console_server.ws_url, token)
    paho = await asyncio.to_thread(PahoDevice, console_server.mqtt_port, token, mac)
    try:
        group = f"/console/devices/{token}"
        steps: list[tuple[str, dict[str, str], int, Any]] = [
            ("add", {"name": "relay", "type": "json", "value": '{"on": true}'}, 109,
             {"on": True}),
            ("edit", {"name": "relay", "type": "json", "value": '{"on": false}'}, 107,
             {"on": False}),
            ("delete", {"name": "relay"}, 108, {"on": False}),
        ]
        for action, form, cmd, value in steps:
            assert ada.post(f"{group}/fields/{action}", **form).status_code == 303
            pushed = await ws.recv_json(timeout=4)
            assert pushed["cmd"] == cmd and pushed["body"]["value"] == value
            assert pushed["body"]["name"] == "relay"
            over_mqtt = await asyncio.to_thread(paho.next)
            assert over_mqtt["cmd"] == cmd and over_mqtt["value"] == value
            await ws.request(103)  # as Tab5 does after a push: lets the next push through
    finally:
        await asyncio.to_thread(paho.close)
        await ws.close()


def test_field_types_from_forms(console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    group = f"/console/devices/{token}"
    for name, kind, text in (("n", "number", "21"), ("f", "number", " -1.5 "),
                             ("t", "text", "21"), ("j", "json", "[1, \"a\"]")):
        assert ada.post(f"{group}/fields/add", name=name, type=kind, value=text).status_code == 303
    rows = httpx.get(f"{console_server.url}/api/v2/{token}/list").json()["data"]["rows"]
    assert {r["name"]: (r["value"], r["dataType"]) for r in rows} == {
        "n": (21, "number"), "f": (-1.5, "number"), "t": ("21", "string"),
        "j": ([1, "a"], "array")}
    assert "Enter a number" in ada.flash(
        ada.post(f"{group}/fields/add", name="x", type="number", value="abc"))
    assert "not valid JSON" in ada.flash(
        ada.post(f"{group}/fields/edit", name="j", type="json", value="{"))
    assert "No data named 'zz'" in ada.flash(
        ada.post(f"{group}/fields/edit", name="zz", type="text", value="1"))
    assert "Choose a file" in ada.flash(
        ada.post(f"{group}/fields/add", name="pic", type="file", value=""))


async def test_file_upload_from_the_console_is_previewed_and_pushed(
        console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    device = await WsDevice.connect(console_server.ws_url, token)
    picture = qr_png("a picture", scale=2)
    reply = ada.post(f"/console/devices/{token}/fields/add", name="photo", type="file",
                     files={"file": ("/flash/res/img/photo.png", picture, "image/png")})
    assert reply.status_code == 303
    pushed = await device.recv_json()
    assert pushed["cmd"] == 105 and pushed["body"]["value"].endswith("/photo.png")
    path = re.search(r"/files/[0-9a-f]{32}/photo\.png", pushed["body"]["value"])
    assert path is not None
    assert f'<img class="f-preview" alt="" src="{path.group(0)}">' in ada.get(
        f"/console/devices/{token}").text
    assert httpx.get(console_server.url + path.group(0)).content == picture
    await device.close()


def test_history_page_draws_numbers(console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    for value in (1, 5, 3):
        httpx.post(f"{console_server.url}/api/v2/{token}/add",
                   json={"name": "level", "value": value})
    page = ada.get(f"/console/devices/{token}/history", params={"name": "level"}).text
    assert "<polyline" in page and "3 values" in page and "min 1 · max 5" in page
    text = ada.get(f"/console/devices/{token}/history", params={"name": "level", "page": "9"})
    assert text.status_code == 200
    httpx.post(f"{console_server.url}/api/v2/{token}/add", json={"name": "word", "value": "x"})
    assert "<polyline" not in ada.get(f"/console/devices/{token}/history",
                                      params={"name": "word"}).text
    assert ada.get(f"/console/devices/{token}/history",
                   params={"name": "nope"}).status_code == 404


def test_device_text_is_escaped_in_server_rendered_pages(console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    hostile = "<img src=x onerror=alert(1)>"
    httpx.post(f"{console_server.url}/api/v2/{token}/add",
               json={"name": hostile, "value": "</textarea><script>alert(2)</script>"})
    for page in (ada.get(f"/console/devices/{token}").text,
                 ada.get(f"/console/devices/{token}/history", params={"name": hostile}).text):
        assert hostile not in page and "<script>alert" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page


async def test_the_device_lists_feed_is_the_accounts_own(console_server: Server) -> None:
    mine, theirs = console_server.register(), console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(mine)
    ConsoleUser.sign_up(console_server).bind(theirs)
    address = f"ws://127.0.0.1:{console_server.http_port}/console/live"
    await handshakes_refused(address, ("", console_server.url),
                             (ada.cookie_header(), "http://evil.example"))
    async with connect(address, additional_headers={"Cookie": ada.cookie_header()},
                       origin=console_server.url) as feed:
        first = json.loads(await asyncio.wait_for(feed.recv(), 2))
        assert first["type"] == "devices" and list(first["devices"]) == [mine]
        assert first["devices"][mine]["online"] is False
        other = await WsDevice.connect(console_server.ws_url, theirs)
        await other.request(100, name="secret", value=1)
        device = await WsDevice.connect(console_server.ws_url, mine)
        online = json.loads(await asyncio.wait_for(feed.recv(), 2))  # not theirs first
        assert online["type"] == "device" and online["token"] == mine
        assert online["status"]["online"] is True and "field" not in online
        await device.request(100, name="temp", value=21.5)
        change = json.loads(await asyncio.wait_for(feed.recv(), 2))
        assert change["field"]["record"]["name"] == "temp" and change["status"]["online"]
        await device.close()
        offline = json.loads(await asyncio.wait_for(feed.recv(), 2))
        assert offline["status"]["online"] is False and offline["status"]["lastSeen"] > 0
        assert "Device released" in ada.flash(ada.post(f"/console/devices/{mine}/release"))
        gone = json.loads(await asyncio.wait_for(feed.recv(), 2))
        assert gone == {"type": "gone", "token": mine}
        await other.close()


def test_field_forms_answer_a_script_in_json(console_server: Server) -> None:
    token = console_server.register()
    ada = ConsoleUser.sign_up(console_server)
    ada.bind(token)
    ada.get(f"/console/devices/{token}")
    as_json = {"Accept": "application/json"}
    added = ada.http.post(f"/console/devices/{token}/fields/add", headers=as_json,
                          data={"csrf": ada.csrf, "name": "relay", "type": "json",
                                "value": "false"})
    assert (added.status_code, added.json()) == (200, {"message": "Added relay."})
    refused = ada.http.post(f"/console/devices/{token}/fields/edit", headers=as_json,
                            data={"csrf": ada.csrf, "name": "relay", "type": "number",
                                  "value": "on"})
    assert refused.status_code == 400
    assert refused.json() == {"error": "Enter a number, such as 21 or 21.5."}
    bob = ConsoleUser.sign_up(console_server)
    foreign = bob.http.post(f"/console/devices/{token}/fields/edit", headers=as_json,
                            data={"csrf": bob.csrf, "name": "relay", "type": "json",
                                  "value": "true"})
    assert foreign.status_code == 404 and "error" in foreign.json()
    forged = ada.http.post(f"/console/devices/{token}/fields/edit", headers=as_json,
                           data={"csrf": "forged", "name": "relay", "type": "json",
                                 "value": "true"})
    assert forged.status_code == 403 and "text/html" in forged.headers["content-type"]
    page = ada.get(f"/console/devices/{token}").text
    assert 'role="switch" aria-checked="false"' in page  # still off: only Ada's form counted
