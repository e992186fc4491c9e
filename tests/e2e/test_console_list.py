"""The device list in a real browser (headless Chromium through Playwright) with real devices on
WebSocket: status kept live (a device whose connection dies turns offline without a reload),
last values, relative last-seen times, search by name or MAC, and the three sort orders."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import httpx
from console_browser import LIVE_WITHIN_MS, ConsoleTab
from support.clients import WsDevice
from support.server import Server

if TYPE_CHECKING:
    from playwright.async_api import Browser

_ROWS = """() => Array.from(document.querySelectorAll("#devices tbody tr"))
  .filter((row) => !row.hidden).map((row) => row.querySelector(".d-name").textContent)"""
_STATUS = """(token) => document.querySelector(`#devices tr[data-token="${token}"] .d-status`)
  .textContent"""


def email() -> str:
    return f"{secrets.token_hex(5)}@example.com"


async def shown_rows(tab: ConsoleTab) -> list[str]:
    rows: list[str] = await tab.page.evaluate(_ROWS)
    return rows


async def wait_status(tab: ConsoleTab, token: str, status: str) -> None:
    await tab.page.wait_for_function(f"(token) => ({_STATUS})(token) === {status!r}", arg=token,
                                     timeout=LIVE_WITHIN_MS)


async def test_the_list_turns_a_killed_device_offline_live(server: Server,
                                                           browser: Browser) -> None:
    token = server.register(f"24a160{secrets.token_hex(3)}", "tab5")
    tab = await ConsoleTab.open(browser, server)
    await tab.sign_up(email())
    await tab.bind_by_token(token)
    device = await WsDevice.connect(server.ws_url, token)
    await device.request(100, name="temp", value=21.5)
    await tab.page.goto("/console/devices")
    await tab.page.evaluate("window.sameDocument = true")
    await tab.page.wait_for_selector("#list-live[data-state=live]", timeout=5000)
    assert await tab.page.evaluate(_STATUS, token) == "online"
    assert await tab.page.text_content(f"tr[data-token='{token}'] .d-values") == "temp 21.5"
    seen = tab.page.locator(f"tr[data-token='{token}'] .d-seen")
    assert await seen.text_content() == "just now"
    assert "(UTC)" in (await seen.get_attribute("title") or "")  # the time and its zone

    await device.request(100, name="humidity", value=40)  # a new value shows live, first
    await tab.page.wait_for_function(
        "(token) => document.querySelector(`tr[data-token='${token}'] .d-values`).textContent"
        " === 'humidity 40temp 21.5'", arg=token, timeout=LIVE_WITHIN_MS)
    device.ws.transport.abort()  # the device dies: its TCP connection is reset
    await wait_status(tab, token, "offline")
    await WsDevice.connect(server.ws_url, token)  # and back
    await wait_status(tab, token, "online")
    assert await tab.page.evaluate("window.sameDocument") is True  # never reloaded
    assert not tab.dialogs and not tab.errors
    await tab.close()


async def test_the_list_is_searched_and_sorted(server: Server, browser: Browser) -> None:
    prefix = secrets.token_hex(5)
    macs = {"c": f"{prefix}01", "a": f"{prefix}02", "b": f"{prefix}03"}
    tokens = {key: server.register(mac, "stamplc") for key, mac in macs.items()}
    printed = ":".join(prefix[i:i + 2] for i in range(0, 10, 2)).upper()
    tab = await ConsoleTab.open(browser, server)
    await tab.sign_up(email())
    for key in ("c", "a", "b"):
        await tab.bind_by_token(tokens[key])
    # b is online now, c was seen a moment ago, a never.
    seen = await WsDevice.connect(server.ws_url, tokens["c"])
    await seen.close()
    online = await WsDevice.connect(server.ws_url, tokens["b"])
    httpx.post(f"{server.url}/api/v2/{tokens['c']}/add", json={"name": "x", "value": 1})
    await tab.page.goto("/console/devices")
    await tab.page.wait_for_selector("#list-live[data-state=live]", timeout=5000)
    names = [f"{printed}:01", f"{printed}:02", f"{printed}:03"]
    assert await shown_rows(tab) == names  # by name at first

    await tab.page.select_option("#device-sort", "status")
    assert await shown_rows(tab) == [names[2], names[0], names[1]]
    await tab.page.select_option("#device-sort", "seen")
    assert await shown_rows(tab) == [names[2], names[0], names[1]]
    await online.close()
    await wait_status(tab, tokens["b"], "offline")
    await tab.page.select_option("#device-sort", "name")
    assert await shown_rows(tab) == names

    await tab.page.fill("#device-search", names[2][-8:])  # a MAC as printed
    assert await shown_rows(tab) == [names[2]]
    await tab.page.fill("#device-search", prefix)  # or without colons
    assert await shown_rows(tab) == names
    await tab.page.fill("#device-search", "nothing like it")
    assert await shown_rows(tab) == [] and await tab.page.is_visible("#no-match")
    await tab.page.fill("#device-search", "")
    assert await shown_rows(tab) == names
    await tab.page.set_viewport_size({"width": 375, "height": 812})
    assert await tab.fits_width()
    assert not tab.dialogs and not tab.errors
    await tab.close()
