"""`/docs` in a real browser (headless Chromium through Playwright): Swagger UI, served by the
server itself, renders the OpenAPI document, lists every operation of the EzData and ESP-AI APIs,
and opens one, whose example request runs; nothing is fetched from anywhere else."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
from console_browser import DESKTOP
from support.server import Server

if TYPE_CHECKING:
    from playwright.async_api import Browser, Route

_SHOWN = """() => [...document.querySelectorAll('.opblock')].map(block =>
  block.querySelector('.opblock-summary-method').textContent + ' ' +
  block.querySelector('.opblock-summary-path').getAttribute('data-path'))"""


async def test_swagger_ui_lists_every_operation_and_runs_one(
        server: Server, browser: Browser) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    documented = sorted(f"{method.upper()} {path}" for path, methods in spec["paths"].items()
                        for method in methods)
    assert "POST /api/v2/device/registerMac" in documented
    assert "GET /api/v2/{token}/historyByKey/{key}" in documented
    assert "POST /devices/list" in documented

    context = await browser.new_context(viewport=DESKTOP, base_url=server.url)
    elsewhere: list[str] = []

    async def only_this_server(route: Route) -> None:
        if route.request.url.startswith(server.url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_this_server)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto("/docs")
    await page.wait_for_selector(".opblock", timeout=10000)
    assert await page.locator("text=Unable to render this definition").count() == 0
    assert sorted(await page.evaluate(_SHOWN)) == documented
    assert await page.locator(".info .title").first.text_content() == (
        f"devicecloud {spec['info']['version']} OAS3")

    register = page.locator(".opblock", has=page.locator(
        "[data-path='/api/v2/device/registerMac']"))
    await register.locator(".opblock-summary").click()
    body = register.locator(".opblock-body")
    await body.wait_for(timeout=5000)
    assert "Request body" in (await body.text_content() or "")
    await body.get_by_role("button", name="Try it out").click()
    await body.get_by_role("button", name="Execute").click()  # the example body, for real
    answer = body.locator(".live-responses-table .response")
    await answer.wait_for(timeout=5000)
    assert (await answer.locator(".response-col_status").text_content() or "").strip() == "200"
    assert re.search(r'"data": "[0-9a-f]{32}"', await answer.locator("pre").first.text_content()
                     or "")
    assert not errors, errors
    assert not elsewhere, elsewhere
    await context.close()
