"""The web console in a real browser (headless Chromium through Playwright), with real devices
on WebSocket and MQTT: sign-up, binding by token, QR URL and pairing code, live data, edits
pushed to devices, text that stays text, and accounts kept apart."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import pytest
from console_browser import DESKTOP, LIVE_WITHIN_MS, PHONE, ConsoleTab, chromium, screenshot
from support.clients import WsDevice
from support.mqtt_clients import PahoDevice
from support.server import Server, random_mac

from devicecloud.web.console.qr import qr_png

if TYPE_CHECKING:
    from playwright.async_api import Browser

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("browser") / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def email() -> str:
    return f"{secrets.token_hex(5)}@example.com"


async def paho_device(server: Server, token: str, mac: str) -> PahoDevice:
    return await asyncio.to_thread(PahoDevice, server.mqtt_port, token, mac)


async def next_push(paho: PahoDevice) -> dict[str, object]:
    return await asyncio.to_thread(paho.next, 4.0)


async def test_sign_up_and_bind_by_token(console_server: Server, browser: Browser,
                                         tmp_path: Path) -> None:
    tab = await ConsoleTab.open(browser, console_server)
    await tab.page.goto("/console")
    assert tab.page.url.endswith("/console/login")
    await screenshot(tab.page, "console-login.png", tmp_path)
    await tab.page.click("text=Sign up")
    await tab.page.fill("input[name=email]", email())
    await tab.page.fill("input[name=password]", "correct horse battery")
    await tab.page.fill("input[name=display_name]", "Ada")
    await tab.page.fill("input[name=phone]", "+1 555 0100")
    await tab.page.click("form button.primary")
    await tab.page.wait_for_url("**/console/devices")
    assert await tab.flash() == "Welcome, Ada."

    tokens = [console_server.register("24:0A:C4:5F:3B:10", "tab5"),
              console_server.register("30:AE:A4:07:0D:64", "stamplc")]
    online = await WsDevice.connect(console_server.ws_url, tokens[0])
    for token in tokens:
        await tab.bind_by_token(token)
        assert await tab.flash() == "Device bound to your account."
    await tab.page.goto("/console/devices")
    rows = tab.page.locator("#devices tbody tr")
    assert await rows.count() == 2
    assert "24:0A:C4:5F:3B:10" in (await rows.nth(0).text_content() or "")
    assert "online" in (await rows.nth(0).text_content() or "")
    assert "offline" in (await rows.nth(1).text_content() or "")
    await screenshot(tab.page, "console-devices.png", tmp_path)
    push = await online.recv_json()
    assert push["cmd"] == 106 and push["body"] == {"deviceToken": tokens[0], "userName": "Ada"}
    await online.close()
    assert not tab.dialogs and not tab.errors
    await tab.close()


async def test_device_writes_appear_live_over_websocket_and_mqtt(
        console_server: Server, browser: Browser, tmp_path: Path) -> None:
    mac = random_mac()
    token = console_server.register(mac, "CoreS3")
    tab = await ConsoleTab.open(browser, console_server)
    await tab.sign_up(email(), "Ada")
    await tab.bind_by_token(token)
    await tab.open_group(token)
    await tab.page.evaluate("window.sameDocument = true")
    assert await tab.page.text_content("#st-online") == "offline"

    ws = await WsDevice.connect(console_server.ws_url, token)
    await tab.page.wait_for_function(
        "() => document.getElementById('st-online').textContent === 'online'", timeout=1000)
    assert await tab.page.text_content("#st-transport") == "websocket"
    assert (await ws.request(100, name="temperature", value=21.5))["code"] == 200
    started = time.monotonic()
    await tab.wait_cell("temperature", "21.5")
    assert time.monotonic() - started < 1.0
    assert await tab.cell("temperature", ".f-type") == "number"

    paho = await paho_device(console_server, token, mac)
    try:
        answer = await asyncio.to_thread(paho.request, 100, name="humidity", value=40)
        assert answer["code"] == 200
        await tab.wait_cell("humidity", "40")
        await ws.request(101, name="temperature", value=22)
        await tab.wait_cell("temperature", "22")
        await asyncio.to_thread(paho.request, 100, name="relay", value={"on": True})
        await tab.wait_cell("relay", '{"on":true}')
        await tab.page.wait_for_function(
            "() => document.getElementById('st-transport').textContent === 'mqtt, websocket'",
            timeout=1000)

        upload = httpx.post(f"{console_server.url}/api/v2/device/uploadDeviceFile",
                            data={"deviceToken": token, "name": "photo"},
                            files={"file": ("qr.png", qr_png("devicecloud", 4), "image/png")})
        assert upload.json()["code"] == 200
        preview = tab.page.locator("#fields tr[data-name=photo] img.f-preview")
        await preview.wait_for(timeout=LIVE_WITHIN_MS)
        assert await preview.evaluate("image => image.complete && image.naturalWidth > 0")
        assert await tab.page.evaluate("window.sameDocument") is True  # never reloaded
        await tab.page.wait_for_selector("#fields tr[data-name=temperature] svg.sparkline",
                                         timeout=3000)  # redrawn after the second value
        assert await tab.fits_width()
        await screenshot(tab.page, "console-group.png", tmp_path)

        await tab.page.set_viewport_size(PHONE)
        assert await tab.fits_width()
        await screenshot(tab.page, "console-group-phone.png", tmp_path)
        await tab.page.set_viewport_size(DESKTOP)

        await tab.page.click("#fields tr[data-name=temperature] a.f-history")
        await tab.page.wait_for_url("**/history?name=temperature")
        assert await tab.page.locator("#chart polyline").count() == 1
        assert await tab.page.locator("#history tbody tr").count() == 2
        await screenshot(tab.page, "console-history.png", tmp_path)
    finally:
        await asyncio.to_thread(paho.close)
        await ws.close()
    assert not tab.dialogs and not tab.errors
    await tab.close()


async def test_browser_edits_reach_the_device_as_107_109_108(
        console_server: Server, browser: Browser) -> None:
    mac = random_mac()
    token = console_server.register(mac)
    tab = await ConsoleTab.open(browser, console_server)
    await tab.sign_up(email())
    await tab.bind_by_token(token)
    ws = await WsDevice.connect(console_server.ws_url, token)
    paho = await paho_device(console_server, token, mac)
    try:
        await ws.request(100, name="setpoint", value=20)
        assert (await next_push(paho))["cmd"] == 109
        await tab.open_group(token)

        row = tab.page.locator("#fields tr[data-name=setpoint]")
        await row.locator("details.f-edit > summary").click()
        await row.locator("textarea[name=value]").fill("23.5")
        await row.locator(".f-edit form[action$='/fields/edit'] button").click()
        await tab.page.wait_for_load_state()
        pushed = await ws.recv_json(timeout=4)
        assert pushed["cmd"] == 107 and pushed["code"] == 200
        assert pushed["body"]["name"] == "setpoint" and pushed["body"]["value"] == 23.5
        over_mqtt = await next_push(paho)
        assert over_mqtt["cmd"] == 107 and over_mqtt["value"] == 23.5
        await ws.request(103)  # as Tab5 does after a push
        await tab.wait_cell("setpoint", "23.5")

        await tab.page.wait_for_selector("#live-state[data-state=live]")
        await tab.page.click("details.add-field summary")
        form = tab.page.locator("#add-field")
        await form.locator("input[name=name]").fill("mode")
        await form.locator("select[name=type]").select_option("text")
        await form.locator("textarea[name=value]").fill("eco")
        await form.locator("button").click()  # sent in place: the page says so and stays
        await tab.page.wait_for_selector("#quick-note:not([hidden])")
        assert await tab.page.text_content("#quick-note") == "Added mode."
        pushed = await ws.recv_json(timeout=4)
        assert pushed["cmd"] == 109 and pushed["body"]["value"] == "eco"
        assert (await next_push(paho))["cmd"] == 109
        await ws.request(103)

        await tab.page.wait_for_selector("#live-state[data-state=live]")
        row = tab.page.locator("#fields tr[data-name=mode]")
        await row.locator("details.f-edit > summary").click()
        await row.locator("details.confirm > summary").click()
        async with tab.page.expect_navigation():
            await tab.page.click("#confirm-yes")
        pushed = await ws.recv_json(timeout=4)
        assert pushed["cmd"] == 108 and pushed["body"]["name"] == "mode"
        assert (await next_push(paho))["cmd"] == 108
        assert await tab.cell("mode") is None
    finally:
        await asyncio.to_thread(paho.close)
        await ws.close()
    assert not tab.dialogs and not tab.errors
    await tab.close()


async def test_bind_by_qr_url_pushes_106(console_server: Server, browser: Browser) -> None:
    token = console_server.register(random_mac(), "stackchan")
    device = await WsDevice.connect(console_server.ws_url, token)
    bind_url = f"{console_server.url}/console/bind/{token}"
    shown_by_device = httpx.get(f"{bind_url}/qr.png")  # what the device would display
    assert shown_by_device.content == qr_png(bind_url)

    tab = await ConsoleTab.open(browser, console_server)
    await tab.sign_up(email(), "Grace")
    await tab.page.goto(bind_url)  # what scanning the code opens
    await tab.page.wait_for_url(f"**/console/devices/{token}")
    assert await tab.flash() == "Device bound to your account."
    push = await device.recv_json()
    assert push["cmd"] == 106 and push["body"] == {"deviceToken": token, "userName": "Grace"}
    assert await tab.page.text_content("#bind-url") == bind_url
    assert await tab.page.locator("img.qr").evaluate("image => image.naturalWidth > 0")
    await device.close()

    second = console_server.register(random_mac())
    device = await WsDevice.connect(console_server.ws_url, second)
    fresh = await ConsoleTab.open(browser, console_server)
    await fresh.page.goto(f"{console_server.url}/console/bind/{second}")
    assert "/console/login?next=" in fresh.page.url
    await fresh.page.click("text=Sign up")
    await fresh.page.fill("input[name=email]", email())
    await fresh.page.fill("input[name=password]", "correct horse battery")
    await fresh.page.fill("input[name=display_name]", "Lin")
    await fresh.page.click("form button.primary")
    await fresh.page.wait_for_url(f"**/console/bind/{second}")
    await fresh.page.click("#confirm-bind")  # reached through a redirect: asks first
    await fresh.page.wait_for_url(f"**/console/devices/{second}")
    push = await device.recv_json()
    assert push["cmd"] == 106 and push["body"]["userName"] == "Lin"
    await device.close()
    await tab.close()
    await fresh.close()


async def test_bind_by_pair_code_over_websocket_and_mqtt(
        console_server: Server, browser: Browser) -> None:
    tab = await ConsoleTab.open(browser, console_server)
    await tab.sign_up(email(), "Pat")

    token = console_server.register(random_mac(), "stackchan")
    ws = await WsDevice.connect(console_server.ws_url, token)
    code = (await ws.request(112))["body"]["pairCode"]
    await tab.page.goto("/console/devices")
    await tab.page.fill("#pair-code", code)
    await tab.page.click("form[action='/console/devices/pair'] button")
    await tab.page.wait_for_url(f"**/console/devices/{token}")
    assert await tab.flash() == "Device paired and bound to your account."
    push = await ws.recv_json()
    assert push["cmd"] == 106 and push["body"] == {"deviceToken": token, "userName": "Pat"}
    await ws.close()

    mac = random_mac()
    token = console_server.register(mac)
    paho = await paho_device(console_server, token, mac)
    try:
        code = (await asyncio.to_thread(paho.request, 112))["body"]["pairCode"]
        await tab.page.goto("/console/devices")
        await tab.page.fill("#pair-code", code)
        await tab.page.click("form[action='/console/devices/pair'] button")
        await tab.page.wait_for_url(f"**/console/devices/{token}")
        push = await next_push(paho)
        assert push["cmd"] == 106 and push["body"] == {"deviceToken": token, "userName": "Pat"}
    finally:
        await asyncio.to_thread(paho.close)
    await tab.page.goto("/console/devices")
    await tab.page.fill("#pair-code", code)
    await tab.page.click("form[action='/console/devices/pair'] button")
    await tab.page.wait_for_url("**/console/devices")
    assert "unknown, used or expired" in await tab.flash()
    await tab.close()


async def test_a_hostile_field_name_shows_as_text(console_server: Server, browser: Browser
                                                  ) -> None:
    token = console_server.register()
    tab = await ConsoleTab.open(browser, console_server)
    await tab.sign_up(email())
    await tab.bind_by_token(token)
    await tab.open_group(token)
    device = await WsDevice.connect(console_server.ws_url, token)
    await device.request(100, name=HOSTILE, value="<b id=bold>bold</b>")
    await tab.wait_cell(HOSTILE, "<b id=bold>bold</b>")
    await device.close()

    async def only_text() -> None:
        assert await tab.cell(HOSTILE, ".f-name") == HOSTILE
        assert await tab.page.locator("img[src=x]").count() == 0
        assert await tab.page.locator("#bold").count() == 0

    await only_text()  # as the live table put it
    await tab.page.reload()
    await tab.page.wait_for_selector("#live-state[data-state=live]")
    await only_text()  # as the server rendered it
    await tab.page.goto(f"/console/devices/{token}/history?name={quote(HOSTILE)}")
    assert await tab.page.text_content("#field-name") == HOSTILE
    assert await tab.page.locator("img[src=x]").count() == 0
    await asyncio.sleep(0.3)
    assert not tab.dialogs, tab.dialogs
    assert not tab.errors
    await tab.close()


async def test_a_second_account_cannot_see_or_open_the_first_accounts_devices(
        console_server: Server, browser: Browser) -> None:
    token = console_server.register("A4:CF:12:00:00:01")
    first = await ConsoleTab.open(browser, console_server)
    await first.sign_up(email())
    await first.bind_by_token(token)

    second = await ConsoleTab.open(browser, console_server)
    await second.sign_up(email())
    assert "A4:CF:12:00:00:01" not in (await second.page.text_content("main") or "")
    for path in (f"/console/devices/{token}", f"/console/devices/{token}/history?name=x"):
        response = await second.page.goto(path)
        assert response is not None and response.status == 404
        assert await second.page.text_content("h1") == "Not found"
        assert token not in await second.page.content()
    refused = await second.page.evaluate("""token => new Promise(resolve => {
        const socket = new WebSocket(`ws://${location.host}/console/live/${token}`);
        socket.onmessage = () => resolve("message");
        socket.onclose = () => resolve("closed");
    })""", token)
    assert refused == "closed"
    await second.page.goto("/console/devices")
    await second.page.fill("#add-token", token)
    await second.page.click("form[action='/console/devices/add'] button")
    await second.page.wait_for_url("**/console/devices")
    assert "bound to another account" in await second.flash()
    await first.close()
    await second.close()


async def test_release_from_the_console_and_by_release_user(
        console_server: Server, browser: Browser) -> None:
    token = console_server.register()
    tab = await ConsoleTab.open(browser, console_server)
    await tab.sign_up(email())
    await tab.bind_by_token(token)
    await tab.page.click("#release > summary")
    await tab.page.click("#confirm-yes")
    await tab.page.wait_for_url("**/console/devices")
    assert await tab.flash() == "Device released; its data stays with the device."
    assert token not in await tab.page.content()

    await tab.bind_by_token(token)
    await tab.open_group(token)
    # A release by the device's token waits for the owner, who sees it on the device's page.
    released = httpx.post(f"{console_server.url}/api/v2/device/releaseUser/{token}", json={})
    assert released.json()["code"] == 200
    assert "owner confirms" in released.json()["data"]
    await tab.open_group(token)
    await tab.page.click("#release-request details.confirm > summary")
    await tab.page.click("#confirm-yes")
    await tab.page.wait_for_url("**/console/devices", timeout=2000)
    assert token not in await tab.page.content()
    await tab.close()


async def test_every_page_fits_a_phone(console_server: Server, browser: Browser,
                                       tmp_path: Path) -> None:
    token = console_server.register(random_mac(), "papercolor")
    httpx.post(f"{console_server.url}/api/v2/{token}/add",
               json={"name": "a long name " * 8, "value": {"nested": ["x" * 120]}})
    tab = await ConsoleTab.open(browser, console_server, viewport=PHONE)
    await tab.page.goto("/console/login")
    assert await tab.fits_width()
    await tab.sign_up(email(), "Phone user")
    await tab.bind_by_token(token)
    await tab.page.wait_for_selector("#live-state[data-state=live]")
    for path in ("/console/devices", f"/console/devices/{token}", "/console/account",
                 "/console/agents",
                 f"/console/devices/{token}/history?name=" + ("a%20long%20name%20" * 8),
                 "/console/signup"):
        await tab.page.goto(path)
        assert await tab.fits_width(), path
    await tab.page.goto("/console/devices")
    await screenshot(tab.page, "console-devices-phone.png", tmp_path)
    assert re.search(r"Phone user", await tab.page.text_content("header") or "")
    await tab.close()


async def test_agents_and_firmware_in_the_browser(console_server: Server, browser: Browser,
                                                 tmp_path: Path) -> None:
    tab = await ConsoleTab.open(browser, console_server)
    await tab.sign_up(email(), "Agent keeper")
    await tab.page.goto("/console/agents")  # in the menu once the account has an agent
    await tab.page.fill("#agent-name", "客厅助手")
    await tab.page.fill("section:has(#agent-name) input[name=server_url]", "ws://10.0.0.9:8088")
    async with tab.page.expect_navigation():
        await tab.page.get_by_role("button", name="Make agent").click()
    assert (await tab.flash()).startswith("Agent 客厅助手 made")
    api_key = await tab.page.text_content(".agent-key")
    assert api_key and re.fullmatch(r"[0-9a-f]{32}", api_key)
    info = httpx.get(f"{console_server.url}/sdk/get_server_info_by_api_key",
                     params={"api_key": api_key}).json()
    assert info["data"]["ip"] == "10.0.0.9"
    image = tmp_path / "desk-lamp.bin"
    image.write_bytes(b"\xe9" + b"\x00" * 4095)
    await tab.page.fill("input[name=bin_id]", "desk-lamp")
    await tab.page.fill("section:has(input[name=bin_id]) input[name=version]", "1.4.0")
    await tab.page.set_input_files("input[type=file]", str(image))
    async with tab.page.expect_navigation():
        await tab.page.get_by_role("button", name="Upload", exact=True).click()
    assert (await tab.flash()).startswith("Firmware desk-lamp 1.4.0 uploaded")
    assert await tab.page.text_content("#firmware td[data-label=bin_id]") == "desk-lamp"
    await screenshot(tab.page, "console-agents.png", tmp_path)
    assert not tab.errors and not tab.dialogs
    await tab.close()
