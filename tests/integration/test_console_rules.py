"""The console's rules without a browser: pairing codes on a real SQLite store, value parsing,
the chart, image previews and session cookies (the throttle: test_console_guessing.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.responses import Response
from support.server import database_url

from devicecloud.blobs.disk import DiskBlobs
from devicecloud.bus.memory import MemoryBus
from devicecloud.config import Settings
from devicecloud.core import pairing
from devicecloud.core.accounts import Accounts
from devicecloud.core.errors import Conflict, InvalidRequest, NotFound
from devicecloud.core.events import DeviceBound, Event
from devicecloud.core.models import HistoryEntry
from devicecloud.core.service import DeviceCloud
from devicecloud.protocols.ezdata_mqtt import push_size
from devicecloud.store.open import open_store
from devicecloud.web.console.chart import (
    BOTTOM,
    HEIGHT,
    LEFT,
    PAD,
    WIDTH,
    numeric_chart,
    sparkline,
    stretches,
)
from devicecloud.web.console.forms import kind_of, parse_value, shown
from devicecloud.web.console.rendering import preview_path
from devicecloud.web.console.sessions import COOKIE_NAME, Session, SessionCookies


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[DeviceCloud]:
    store = await open_store(Settings(data_dir=tmp_path, database_url=database_url(tmp_path)))
    yield DeviceCloud(store, MemoryBus(), DiskBlobs(tmp_path / "files"), downlink_size=push_size)
    await store.close()


# Pairing codes --------------------------------------------------------------------------------

async def test_pair_codes_are_eight_base32_characters_single_use_and_expire(
        cloud: DeviceCloud) -> None:
    device = await cloud.register_mac("aabbccddee01", "stackchan")
    now = 1_000_000
    code = await pairing.issue(cloud.store, device, now)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", code)
    assert await pairing.redeem(cloud.store, code, now + 1) == device.token
    with pytest.raises(NotFound):
        await pairing.redeem(cloud.store, code, now + 2)  # used up
    code = await pairing.issue(cloud.store, device, now)
    with pytest.raises(NotFound):
        await pairing.redeem(cloud.store, code, now + pairing.PAIR_CODE_LIFETIME_MS)
    fresh = await pairing.issue(cloud.store, device, now)
    assert await pairing.redeem(cloud.store, fresh,
                                now + pairing.PAIR_CODE_LIFETIME_MS - 1) == device.token


async def test_a_new_code_replaces_the_devices_older_one(cloud: DeviceCloud) -> None:
    device = await cloud.register_mac("aabbccddee02", "")
    other = await cloud.register_mac("aabbccddee03", "")
    older = await pairing.issue(cloud.store, device, 0)
    kept = await pairing.issue(cloud.store, other, 0)
    newer = await pairing.issue(cloud.store, device, 0)
    if newer != older:
        with pytest.raises(NotFound):
            await pairing.redeem(cloud.store, older, 1)
    assert await pairing.redeem(cloud.store, newer, 1) == device.token
    assert await pairing.redeem(cloud.store, kept, 1) == other.token


async def test_live_codes_never_collide(cloud: DeviceCloud, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    first = await cloud.register_mac("aabbccddee04", "")
    second = await cloud.register_mac("aabbccddee05", "")
    drawn = iter(["11111111", "11111111", "22222222"])
    monkeypatch.setattr(pairing, "new_pair_code", lambda: next(drawn))
    assert await pairing.issue(cloud.store, first, 0) == "1111-1111"
    assert await pairing.issue(cloud.store, second, 0) == "2222-2222"
    monkeypatch.setattr(pairing, "new_pair_code", lambda: "11111111")
    with pytest.raises(Conflict):
        await pairing.issue(cloud.store, second, 0)


@pytest.mark.parametrize(("typed", "code"), [
    ("K7QM-4XPA", "K7QM4XPA"), ("k7qm4xpa", "K7QM4XPA"), (" k7qm 4xpa ", "K7QM4XPA"),
    ("01234567", "01234567"), ("oIlL-abcd", "0111ABCD")])
def test_pair_codes_as_typed(typed: str, code: str) -> None:
    assert pairing.normalise_pair_code(typed) == code


@pytest.mark.parametrize("typed", ["", "1234567", "123456789", "1234567U", "K7QM_4XPA",
                                   "١٢٣٤٥٦٧٨", "\u0131" * 8, None, 12345678])
def test_malformed_pair_codes(typed: object) -> None:
    with pytest.raises(InvalidRequest):
        pairing.normalise_pair_code(typed)


async def test_binding_by_pair_code_announces_106(cloud: DeviceCloud) -> None:
    events: list[Event] = []
    cloud.bus.subscribe(events.append)
    device = await cloud.register_mac("aabbccddee06", "")
    account = await Accounts(cloud.store).create("pair@example.com", "a long secret", "Pat")
    code = await cloud.issue_pair_code(device)
    assert (await cloud.bind_by_pair_code(code, account)).token == device.token
    assert events[-1] == DeviceBound(device.token, account.id, "Pat")
    other = await Accounts(cloud.store).create("other@example.com", "a long secret")
    with pytest.raises(Conflict):
        await cloud.bind_by_pair_code(await cloud.issue_pair_code(device), other)


# Forms, chart, previews, cookies -------------------------------------------------------------

@pytest.mark.parametrize(("kind", "text", "value", "data_type"), [
    ("number", "21", 21, "number"), ("number", " -2.5e1 ", -25.0, "number"),
    ("text", " 21 ", " 21 ", "string"), ("json", '{"a": [1]}', {"a": [1]}, None),
    ("json", "true", True, None), ("json", '"s"', "s", None)])
def test_values_typed_in_forms(kind: str, text: str, value: object, data_type: str | None
                               ) -> None:
    assert parse_value(kind, text) == (value, data_type)


@pytest.mark.parametrize(("kind", "text"), [("number", "abc"), ("number", "nan"),
                                            ("number", "inf"), ("json", "{"), ("other", "1")])
def test_values_refused_with_a_reason(kind: str, text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_value(kind, text)


def test_values_shown_and_edited_as_text() -> None:
    assert shown("a<b") == "a<b" and shown({"a": 1}) == '{"a":1}' and shown(None) == "null"
    assert kind_of("number", 1) == "number" and kind_of("number", True) == "json"
    assert kind_of("string", "x") == "text" and kind_of("dict", {}) == "json"
    assert kind_of("file", "http://h/f.png") == "file"


def test_chart_of_numeric_history() -> None:
    rows = [HistoryEntry(3, "number", 3000), HistoryEntry("x", "string", 2000),
            HistoryEntry(1, "number", 1000)]
    chart = numeric_chart(rows)
    assert chart is not None and chart.count == 2 and (chart.low, chart.high) == (1, 3)
    left, right, top, bottom = LEFT, WIDTH - PAD, PAD, HEIGHT - BOTTOM - PAD
    assert chart.lines == (f"{left:.1f},{bottom:.1f} {right:.1f},{top:.1f}",)
    assert [tick.label for tick in chart.value_ticks] == ["3", "2", "1"]
    assert [tick.ms for tick in chart.time_ticks] == [1000, 3000]
    assert chart.marks[0].title == "1 at 1970-01-01 00:00:01 UTC"
    assert numeric_chart(rows[:2]) is None
    flat = numeric_chart([HistoryEntry(2.5, "number", 5), HistoryEntry(2.5, "number", 5)])
    assert flat is not None and [tick.label for tick in flat.value_ticks] == ["2.5"]
    assert {mark.y for mark in flat.marks} == {PAD + (HEIGHT - BOTTOM - 2 * PAD) / 2}


def test_a_gap_breaks_the_line() -> None:
    """Values every 10 s, a 3-minute outage, then every 10 s again: two lines, not a ramp; a
    slower but steady pace is no gap."""
    times = [0, 10, 20, 30, 210, 220, 230]
    rows = [HistoryEntry(index, "number", ms * 1000) for index, ms in enumerate(times)][::-1]
    chart = numeric_chart(rows)
    assert chart is not None and [len(line.split()) for line in chart.lines] == [4, 3]
    assert stretches([0, 10, 20, 45, 60, 70]) == [(0, 6)]
    spark = sparkline(rows)
    assert spark is not None and len(spark.lines) == 2 and spark.left == 0


@pytest.mark.parametrize(("value", "path"), [
    (f"http://h:8000/files/{'a' * 32}/p.png", f"/files/{'a' * 32}/p.png"),
    (f"https://x.org/files/{'a' * 32}/My pic (1).JPG", f"/files/{'a' * 32}/My pic (1).JPG"),
    (f"http://h/files/{'a' * 32}/doc.pdf", ""), (f"javascript:/files/{'a' * 32}/p.png", ""),
    ("http://h/elsewhere/p.png", ""), (42, "")])
def test_only_image_files_stored_here_are_previewed(value: object, path: str) -> None:
    assert preview_path("file", value) == path
    assert preview_path("string", value) == ""


def test_session_cookie_round_trip_and_forgery() -> None:
    cookies = SessionCookies(b"k" * 64)
    session = Session()
    session.log_in(7, "epoch")
    session.say("hello", error=True)
    response = Response()
    cookies.store(response, session, secure=True)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=lax" in header and "Secure" in header
    value = header.split(";")[0].split("=", 1)[1]
    loaded = cookies.load({COOKIE_NAME: value})
    assert loaded is not None and loaded.account_id == 7 and loaded.csrf == session.csrf
    assert loaded.epoch == "epoch"
    assert loaded.take_flash() == ("hello", True) and loaded.take_flash() == ("", False)
    assert SessionCookies(b"j" * 64).load({COOKIE_NAME: value}) is None
    assert cookies.load({COOKIE_NAME: value[:-2]}) is None and cookies.load({}) is None
    before = session.csrf
    session.log_out()
    assert session.account_id is None and session.csrf != before
