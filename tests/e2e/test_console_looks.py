"""How the console looks in a real browser (headless Chromium through Playwright): dark when the
system is, typed text never bold, the Agents page in the menu only of accounts that use ESP-AI,
and every main page fitting a 375 px phone without sideways scrolling."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

import httpx
from console_browser import ConsoleTab
from support.espai import add_device, api, new_tenant
from support.server import Server, random_mac

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, ViewportSize

SMALL_PHONE: ViewportSize = {"width": 375, "height": 812}
AGENTS_LINK = "header nav a[href='/console/agents']"
_STYLE = "([selector, property]) => getComputedStyle(document.querySelector(selector))[property]"


def email() -> str:
    return f"{secrets.token_hex(5)}@example.com"


async def style(page: Page, selector: str, prop: str) -> str:
    value: str = await page.evaluate(_STYLE, [selector, prop])
    return value


def luminance(color: str) -> float:
    """The relative luminance (0 black to 1 white) of a CSS `rgb(...)` colour."""
    found = re.match(r"rgba?\((\d+), (\d+), (\d+)", color)
    assert found, color
    red, green, blue = (int(part) / 255 for part in found.groups())
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


async def test_the_console_is_dark_when_the_system_is(server: Server, browser: Browser) -> None:
    for scheme in ("dark", "light"):
        context = await browser.new_context(color_scheme=scheme, base_url=server.url)
        page = await context.new_page()
        await page.goto("/console/signup")
        background = luminance(await style(page, "html", "backgroundColor"))
        text = luminance(await style(page, "h1", "color"))
        field = luminance(await style(page, "input[name=email]", "backgroundColor"))
        typed = luminance(await style(page, "input[name=email]", "color"))
        if scheme == "dark":
            assert background < 0.15 and field < 0.15 and text > 0.7 and typed > 0.7, scheme
        else:
            assert background > 0.85 and field > 0.85 and text < 0.3 and typed < 0.3, scheme
        await context.close()


async def test_typed_text_is_not_bold(server: Server, browser: Browser) -> None:
    tab = await ConsoleTab.open(browser, server)
    await tab.page.goto("/console/signup")
    assert await style(tab.page, "label", "fontWeight") == "600"  # the label around the field
    for name in ("email", "password", "display_name", "phone"):
        assert await style(tab.page, f"input[name={name}]", "fontWeight") == "400", name
    await tab.sign_up(email())
    assert await style(tab.page, "#add-token", "fontWeight") == "400"
    await tab.page.goto("/console/account")
    assert await style(tab.page, "input[name=display_name]", "fontWeight") == "400"
    await tab.close()


async def test_agents_are_in_the_menu_only_of_accounts_that_use_espai(
        server: Server, browser: Browser) -> None:
    newcomer = await ConsoleTab.open(browser, server)
    await newcomer.sign_up(email())
    await newcomer.page.wait_for_selector("header nav a[href='/console/devices']")
    assert await newcomer.page.locator(AGENTS_LINK).count() == 0
    await newcomer.page.goto("/console/account")  # where to find them before the first agent
    await newcomer.page.click("#espai a[href='/console/agents']")
    await newcomer.page.wait_for_url("**/console/agents")

    tenant = new_tenant(server)  # an account with an agent
    agent_user = await ConsoleTab.open(browser, server)
    await agent_user.page.goto("/console/login")
    await agent_user.page.fill("input[name=email]", tenant.email)
    await agent_user.page.fill("input[name=password]", "secret-password")
    await agent_user.page.click("form button.primary")
    await agent_user.page.wait_for_url("**/console/devices")
    assert await agent_user.page.locator(AGENTS_LINK).count() == 1
    await agent_user.page.goto("/console/account")
    assert await agent_user.page.locator("#espai").count() == 0
    await agent_user.close()

    # A device the ESP-AI firmware added, released, then bound by an account without an agent.
    mac = random_mac()
    record = add_device(server, tenant, mac)["data"]
    assert api(server, "/devices/del", [{"id": record["id"]}], tenant.open_api_key)["success"]
    await newcomer.bind_by_token(server.register(mac, "esp-ai"))  # its token, its type kept
    assert await newcomer.page.locator(AGENTS_LINK).count() == 1
    assert not newcomer.errors
    await newcomer.close()


async def test_every_main_page_fits_a_375_px_phone(server: Server, browser: Browser) -> None:
    token = server.register(random_mac(), "papercolor")
    name = "a long name " * 8
    httpx.post(f"{server.url}/api/v2/{token}/add",
               json={"name": name, "value": {"nested": ["x" * 120]}})
    httpx.post(f"{server.url}/api/v2/{token}/add", json={"name": "t", "value": 21.5})
    tenant = new_tenant(server)
    tab = await ConsoleTab.open(browser, server, viewport=SMALL_PHONE)
    for path in ("/console/login", "/console/signup"):
        await tab.page.goto(path)
        assert await tab.fits_width(), path
    await tab.page.goto("/console/login")
    await tab.page.fill("input[name=email]", tenant.email)
    await tab.page.fill("input[name=password]", "secret-password")
    await tab.page.click("form button.primary")
    await tab.page.wait_for_url("**/console/devices")
    await tab.bind_by_token(token)
    for path in ("/console/devices", f"/console/devices/{token}", "/console/account",
                 "/console/agents", f"/console/devices/{token}/history?name=t",
                 f"/console/devices/{token}/history?name=" + name.replace(" ", "%20")):
        await tab.page.goto(path)
        assert await tab.fits_width(), path
    assert await tab.page.locator(AGENTS_LINK).count() == 1
    assert not tab.errors
    await tab.close()
