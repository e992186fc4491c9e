"""Helpers for the browser tests: Playwright for Python driving Debian's headless Chromium
(`/usr/bin/chromium`), a console tab acting as one person, and screenshots for the docs.

Browser tests are skipped, with the reason shown, where that Chromium or Playwright is missing
(`scripts/test.sh` installs both). Screenshots go to `docs/images/` when a picture is missing
there, or all of them with `DEVICECLOUD_SCREENSHOTS=1`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.server import Server

if TYPE_CHECKING:
    from playwright.async_api import Browser, Dialog, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
DESKTOP: ViewportSize = {"width": 1000, "height": 760}
PHONE: ViewportSize = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
LIVE_WITHIN_MS = 1000

_CELL = """([name, selector]) => {
  for (const row of document.querySelectorAll("#fields tbody tr")) {
    if (row.dataset.name === name) return row.querySelector(selector).textContent;
  }
  return null;
}"""
_CELL_IS = f"([name, selector, text]) => ({_CELL})([name, selector]) === text"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium under Playwright, or a skip saying what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} "
                    "(apt-get install -y chromium; scripts/test.sh installs it)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("browser tests need Playwright for Python (pip install playwright)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


class ConsoleTab:
    """One browser tab on the console, used by one person; notes every dialog and script error
    (a device's text that ran as markup would show as one)."""

    def __init__(self, page: Page, server: Server) -> None:
        self.page = page
        self.server = server
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    @classmethod
    async def open(cls, browser: Browser, server: Server,
                   viewport: ViewportSize = DESKTOP) -> ConsoleTab:
        context = await browser.new_context(viewport=viewport, base_url=server.url)
        return cls(await context.new_page(), server)

    async def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    async def sign_up(self, email: str, name: str = "") -> None:
        page = self.page
        await page.goto("/console/signup")
        await page.fill("input[name=email]", email)
        await page.fill("input[name=password]", PASSWORD)
        await page.fill("input[name=display_name]", name)
        await page.click("form button.primary")
        await page.wait_for_url("**/console/devices")

    async def log_in(self, email: str) -> None:
        await self.page.fill("input[name=email]", email)
        await self.page.fill("input[name=password]", PASSWORD)
        await self.page.click("form button.primary")

    async def bind_by_token(self, token: str) -> None:
        page = self.page
        await page.goto("/console/devices")
        await page.fill("#add-token", token)
        await page.click("form[action='/console/devices/add'] button")
        await page.wait_for_url(f"**/console/devices/{token}")

    async def open_group(self, token: str) -> None:
        """The device's page, once its live feed is connected."""
        await self.page.goto(f"/console/devices/{token}")
        await self.page.wait_for_selector("#live-state[data-state=live]", timeout=5000)

    async def cell(self, name: str, selector: str = ".f-value") -> str | None:
        """The text of one cell of the row of field `name` (None if there is no such row)."""
        text: str | None = await self.page.evaluate(_CELL, [name, selector])
        return text

    async def wait_cell(self, name: str, text: str, selector: str = ".f-value",
                        timeout: float = LIVE_WITHIN_MS) -> None:
        await self.page.wait_for_function(_CELL_IS, arg=[name, selector, text], timeout=timeout)

    async def fits_width(self) -> bool:
        """True if the page needs no sideways scrolling."""
        widths: list[int] = await self.page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]")
        return widths[0] <= widths[1]

    async def flash(self) -> str:
        text = await self.page.locator("p.flash").first.text_content()
        return text or ""

    async def close(self) -> None:
        await self.page.context.close()


async def screenshot(page: Page, name: str, folder: Path, **options: Any) -> None:
    """Take a full-page PNG; keep it in docs/images if it is missing there (or asked for)."""
    path = folder / name
    await page.screenshot(path=str(path), full_page=True, **options)
    target = IMAGES / name
    if os.environ.get("DEVICECLOUD_SCREENSHOTS") == "1" or not target.exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
