"""A device's page, a field's history and the Agents page in a real browser (headless
Chromium through Playwright) with a real WebSocket device: confirm steps before destructive
actions (with and without scripts), a switch and a stepper whose edits reach the device with no
reload, sparklines and the history chart (axes, values on hover, a break at a gap, live), and
the "Connect a device" card."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from console_browser import DESKTOP, LIVE_WITHIN_MS, ConsoleTab
from support.clients import WsDevice
from support.server import Server, random_mac

if TYPE_CHECKING:
    from playwright.async_api import Browser, ViewportSize

SMALL_PHONE: ViewportSize = {"width": 375, "height": 812}


def email() -> str:
    return f"{secrets.token_hex(5)}@example.com"


async def owned_device(server: Server, browser: Browser) -> tuple[ConsoleTab, str, WsDevice]:
    token = server.register(random_mac(), "cores3")
    tab = await ConsoleTab.open(browser, server)
    await tab.sign_up(email())
    await tab.bind_by_token(token)
    return tab, token, await WsDevice.connect(server.ws_url, token)


async def test_a_field_is_deleted_only_once_confirmed(server: Server, browser: Browser) -> None:
    tab, token, device = await owned_device(server, browser)
    await device.request(100, name="mode", value="eco")
    await tab.open_group(token)
    row = tab.page.locator("#fields tr[data-name=mode]")
    await row.locator("details.f-edit > summary").click()
    await row.locator("details.confirm > summary").click()
    dialog = tab.page.locator("#confirm-dialog")
    assert await dialog.is_visible()
    assert await dialog.locator(".confirm-what").text_content() == "mode"
    assert "Delete this field and its history?" in (await dialog.text_content() or "")
    await dialog.locator("button[value=no]").click()
    assert not await dialog.is_visible()
    assert (await device.request(103))["cmd"] == 103  # nothing was pushed before this answer
    assert await tab.cell("mode") == "eco"

    await row.locator("details.confirm > summary").click()
    async with tab.page.expect_navigation():
        await tab.page.click("#confirm-yes")
    assert await tab.flash() == "Deleted mode."
    assert (await device.recv_json())["cmd"] == 108
    await device.close()
    assert not tab.dialogs and not tab.errors
    await tab.close()


async def test_without_scripts_the_confirm_is_a_second_button(server: Server,
                                                              browser: Browser) -> None:
    token = server.register(random_mac())
    context = await browser.new_context(java_script_enabled=False, base_url=server.url)
    tab = ConsoleTab(await context.new_page(), server)
    await tab.sign_up(email())
    await tab.bind_by_token(token)
    httpx.post(f"{server.url}/api/v2/{token}/add", json={"name": "mode", "value": "eco"})
    await tab.page.goto(f"/console/devices/{token}")
    row = tab.page.locator("#fields tr[data-name=mode]")
    await row.locator("details.f-edit > summary").click()
    delete = row.locator("details.confirm button.danger")
    assert not await delete.is_visible()  # the first click only asks
    await row.locator("details.confirm > summary").click()
    assert "Delete this field and its history?" in (
        await row.locator(".confirm-question").text_content() or "")
    async with tab.page.expect_navigation():
        await delete.click()
    assert await tab.flash() == "Deleted mode."
    await tab.page.click("#release > summary")
    await tab.page.click("#release button.danger")
    await tab.page.wait_for_url("**/console/devices")
    assert await tab.flash() == "Device released; its data stays with the device."
    await tab.close()


async def test_a_switch_and_a_stepper_edit_in_place(server: Server, browser: Browser) -> None:
    tab, token, device = await owned_device(server, browser)
    await device.request(100, name="relay", value=False)
    await device.request(100, name="setpoint", value=20)
    await tab.open_group(token)
    await tab.page.evaluate("window.sameDocument = true")
    assert await tab.page.text_content("#st-seen") == "just now"  # online; the time on hover
    assert "(UTC)" in (await tab.page.get_attribute("#st-seen", "title") or "")
    switch = tab.page.locator("#fields tr[data-name=relay] button.switch")
    assert await switch.get_attribute("aria-checked") == "false"
    assert not await tab.page.is_visible("#fields tr[data-name=setpoint] .f-switch")

    await switch.click()
    pushed = await device.recv_json(timeout=4)
    assert pushed["cmd"] == 107 and pushed["body"]["name"] == "relay"
    assert pushed["body"]["value"] is True
    await tab.wait_cell("relay", "true")
    await tab.page.wait_for_function(
        "() => document.querySelector('#fields tr[data-name=relay] button.switch')"
        ".getAttribute('aria-checked') === 'true'", timeout=LIVE_WITHIN_MS)
    await switch.click()
    assert (await device.recv_json(timeout=4))["body"]["value"] is False

    stepper = tab.page.locator("#fields tr[data-name=setpoint] .f-stepper")
    await stepper.locator("button[data-step='1']").click()
    pushed = await device.recv_json(timeout=4)
    assert pushed["body"] == {**pushed["body"], "name": "setpoint", "value": 21}
    await tab.wait_cell("setpoint", "21")
    await stepper.locator("input[name=value]").fill("18.5")
    await stepper.locator("input[name=value]").press("Enter")
    assert (await device.recv_json(timeout=4))["body"]["value"] == 18.5
    await tab.wait_cell("setpoint", "18.5")
    await stepper.locator("button[data-step='-1']").click()
    assert (await device.recv_json(timeout=4))["body"]["value"] == 18.4

    await stepper.locator("input[name=value]").fill("")
    await stepper.locator("input[name=value]").press("Enter")  # refused, and said so
    await tab.page.wait_for_selector("#quick-note.error", timeout=LIVE_WITHIN_MS)
    assert await tab.page.evaluate("window.sameDocument") is True
    assert "number" in (await tab.page.text_content("#quick-note") or "")
    assert await tab.page.evaluate("window.sameDocument") is True  # never reloaded


async def test_the_edit_and_add_forms_work_in_place(server: Server, browser: Browser) -> None:
    tab, token, device = await owned_device(server, browser)
    await device.request(100, name="mode", value="eco")
    await tab.open_group(token)
    await tab.page.evaluate("window.sameDocument = true")
    row = tab.page.locator("#fields tr[data-name=mode]")
    await row.locator("details.f-edit > summary").click()
    await row.locator("details.f-edit > form textarea[name=value]").fill("boost")
    await row.locator("details.f-edit > form button.primary").click()
    pushed = await device.recv_json(timeout=4)
    assert pushed["cmd"] == 107 and pushed["body"]["value"] == "boost"
    await tab.wait_cell("mode", "boost")
    assert not await row.locator("details.f-edit").evaluate("d => d.open")
    await tab.page.locator("details.add-field > summary").click()
    add = tab.page.locator("#add-field")
    await add.locator("input[name=name]").fill("label")
    await add.locator("select[name=type]").select_option("text")
    await add.locator("textarea[name=value]").fill("porch")
    await add.locator("button.primary").click()
    added = await device.recv_json(timeout=4)
    assert added["cmd"] == 109 and added["body"]["name"] == "label"
    await tab.wait_cell("label", "porch")
    assert await add.locator("input[name=name]").input_value() == ""
    assert await tab.page.evaluate("window.sameDocument") is True  # never reloaded
    await device.close()
    assert not tab.dialogs and not tab.errors
    await tab.close()


async def test_sparklines_and_the_history_chart(server: Server, browser: Browser) -> None:
    tab, token, device = await owned_device(server, browser)
    await device.request(100, name="level", value=1)
    for value in (3, 2):  # close together
        await asyncio.sleep(0.05)
        await device.request(101, name="level", value=value)
    await asyncio.sleep(1.0)  # a pause twenty times the spacing: a gap
    for value in (6, 4):
        await device.request(101, name="level", value=value)
        await asyncio.sleep(0.05)
    await tab.open_group(token)
    spark = tab.page.locator("#fields tr[data-name=level] svg.sparkline")
    assert await spark.locator("polyline").count() == 2  # broken at the gap
    assert await spark.locator("circle").count() == 5
    assert await tab.page.text_content("#fields tr[data-name=level] .spark-range") == "1 \u2013 6"
    await asyncio.sleep(0.5)  # another gap
    await device.request(101, name="level", value=9)  # a new value redraws the sparkline
    await tab.page.wait_for_function(
        "() => document.querySelectorAll('#fields tr[data-name=level] svg.sparkline circle')"
        ".length === 6", timeout=3000)

    await tab.page.set_viewport_size(SMALL_PHONE)  # rows with sparklines and controls fit
    assert await tab.fits_width()
    await tab.page.set_viewport_size(DESKTOP)
    await tab.page.click("#fields tr[data-name=level] a.f-history")
    await tab.page.wait_for_url("**/history?name=level")
    chart = tab.page.locator("#chart")
    lines = [len((await line.get_attribute("points") or "").split())
             for line in await chart.locator("polyline").all()]
    assert lines == [3, 2, 1]  # broken at each gap
    assert await chart.locator(".y-tick").all_text_contents() == ["9", "5", "1"]
    assert len(await chart.locator(".x-tick").all_text_contents()) == 2
    titles = await chart.locator("circle title").all_text_contents()
    assert [title.split(" at ")[0] for title in titles] == ["1", "3", "2", "6", "4", "9"]
    await device.request(101, name="level", value=7)  # the chart follows live
    await tab.page.wait_for_function(
        "() => document.querySelectorAll('#chart circle').length === 7", timeout=3000)
    assert await tab.page.locator("#history tbody tr").count() == 7
    await tab.page.set_viewport_size(SMALL_PHONE)
    assert await tab.fits_width()
    await device.close()
    assert not tab.dialogs and not tab.errors
    await tab.close()


async def test_the_connect_card_says_where_devices_connect(server: Server,
                                                           browser: Browser) -> None:
    tab, token, device = await owned_device(server, browser)
    await device.close()
    await tab.open_group(token)
    host = server.url.split("//")[1].split(":")[0]
    assert await tab.page.text_content("#connect-http") == server.url
    assert await tab.page.text_content("#connect-ws") == server.ws_url
    assert await tab.page.text_content("#connect-mqtt") == f"{host}:{server.mqtt_port}"
    warning = await tab.page.text_content("#loopback-warning") or ""
    assert "loopback" in warning and "--public-url" in warning
    await tab.close()
    newcomer = await ConsoleTab.open(browser, server)  # no devices yet: the list shows it too
    await newcomer.sign_up(email())
    assert await newcomer.page.text_content("#connect-mqtt") == f"{host}:{server.mqtt_port}"
    await newcomer.close()


async def test_agents_and_firmware_are_deleted_only_once_confirmed(
        server: Server, browser: Browser, tmp_path: Path) -> None:
    tab = await ConsoleTab.open(browser, server)
    await tab.sign_up(email())
    await tab.page.goto("/console/agents")
    await tab.page.fill("#agent-name", "Kitchen")
    await tab.page.click("form[action='/console/agents/add'] button")
    await tab.page.wait_for_selector("section.agent")
    image = tmp_path / "app.bin"
    image.write_bytes(b"\xe9" + bytes(255))
    upload = tab.page.locator("form[action='/console/firmware/upload']")
    await upload.locator("input[name=bin_id]").fill("kitchen-bin")
    await upload.locator("input[name=version]").fill("1.0")
    await upload.locator("input[name=file]").set_input_files(str(image))
    async with tab.page.expect_navigation():
        await upload.locator("button").click()
    assert await tab.page.locator("#firmware tbody tr").count() == 1

    for summary, question, left in (
            ("#firmware details.confirm > summary", "Delete firmware kitchen-bin 1.0?",
             "#firmware"),
            ("section.agent details.confirm > summary", "Delete the agent Kitchen?",
             "section.agent")):
        await tab.page.click(summary)
        dialog = tab.page.locator("#confirm-dialog")
        assert question in (await dialog.locator(".confirm-question").text_content() or "")
        await dialog.locator("button[value=no]").click()
        await tab.page.reload()
        assert await tab.page.locator(left).count() == 1  # still there
        await tab.page.click(summary)
        async with tab.page.expect_navigation():
            await tab.page.click("#confirm-yes")
        assert await tab.page.locator(left).count() == 0
    assert not tab.dialogs and not tab.errors
    await tab.close()
