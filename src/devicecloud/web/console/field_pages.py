"""The console's pages of one device's group of fields: the field table and its live feed,
adding, editing and deleting a field (by a form, or by a script asking for JSON), and a
field's history."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from devicecloud.core.errors import DeviceCloudError, InvalidRequest
from devicecloud.core.ids import now_ms
from devicecloud.core.models import Device, Field
from devicecloud.web.console.chart import Chart, numeric_chart, sparkline
from devicecloud.web.console.device_pages import connect_info, live_account
from devicecloud.web.console.forms import parse_value
from devicecloud.web.console.live import serve_live
from devicecloud.web.console.pages import (
    Visit,
    bind_url,
    console_of,
    group_url,
    owned_device,
    page,
    sentence,
)
from devicecloud.web.console.rendering import mac_text, row
from devicecloud.web.console.state import Console

HISTORY_PAGE_SIZE = 50
FIELDS_PAGE_SIZE = 100  # rows of a device page's field table
CHART_POINTS = 200
SPARK_POINTS = 40  # of a device page row's sparkline


async def _status(console: Console, device: Device) -> dict[str, Any]:
    status = await console.presence.status(device.token)
    return {"online": status.online, "transports": list(status.transports),
            "lastSeen": now_ms() if status.online else device.last_seen_at}


def _page_number(number: str) -> int:
    """A page number from the query (1 for anything else)."""
    return int(number) if number.isascii() and number.isdigit() and (
        0 < int(number) < 10**6) else 1


def _fields_page(fields: list[Field], number: str) -> tuple[list[Field], int, int]:
    """The fields on page `number` of the field table, that page's number and the page count."""
    pages = max(1, math.ceil(len(fields) / FIELDS_PAGE_SIZE))
    page_number = min(_page_number(number), pages)
    start = (page_number - 1) * FIELDS_PAGE_SIZE
    return fields[start:start + FIELDS_PAGE_SIZE], page_number, pages


def _is_number(field: Field) -> bool:
    return field.data_type == "number" and isinstance(field.value, int | float) and (
        not isinstance(field.value, bool))


async def _sparklines(console: Console, fields: list[Field]) -> dict[str, Chart]:
    """The sparkline of each numeric field among `fields` with two values or more."""
    lines = {}
    for field in fields:
        if _is_number(field):
            recent, _ = await console.cloud.history(field, 1, SPARK_POINTS)
            if (line := sparkline(recent)) is not None:
                lines[field.name] = line
    return lines


@page()
async def group(visit: Visit) -> Response:
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    console = visit.console
    fields = await console.cloud.list_fields(device)
    shown, page_number, pages = _fields_page(fields, visit.request.query_params.get("page", ""))
    profile = await console.cloud.profiles.owned_by_device(visit.me, device)
    return visit.render("group.html", device=device, status=await _status(console, device),
                        profile=profile, label=profile.name or mac_text(device.mac),
                        units=await console.cloud.units(device),
                        rows=[row(field.record()) for field in shown], total=len(fields),
                        page=page_number, pages=pages, bind_url=bind_url(visit.base_url, device),
                        sparks=await _sparklines(console, shown),
                        connect=connect_info(console, visit.base_url))


async def live(websocket: WebSocket) -> None:
    """`/console/live/{token}`: the group page's live feed, for the device's owner only."""
    console = console_of(websocket)
    account = await live_account(websocket)
    device = await owned_device(console, account, websocket.path_params["token"])
    if account is None or device is None:
        await websocket.close(code=4404)  # before accepting: the handshake is refused
        return
    token, cloud = device.token, console.cloud
    number = websocket.query_params.get("page", "")

    async def status() -> dict[str, Any] | None:
        now = await owned_device(console, account, token)
        return None if now is None else await _status(console, now)

    async def snapshot() -> dict[str, Any]:  # of the fields on the page's own page
        fields, _, _ = _fields_page(await cloud.list_fields(device), number)
        return {"type": "snapshot", "records": [field.record() for field in fields],
                "status": await status()}

    with console.feeds.watch(token) as watcher:
        await websocket.accept()
        await serve_live(websocket, watcher, account.id, snapshot, status)


def _wants_json(visit: Visit) -> bool:
    """The page's script sent the form and reads the answer itself (the page stays)."""
    return visit.request.headers.get("accept", "").startswith("application/json")


async def _on_field(visit: Visit, change: Callable[[Device], Awaitable[str]]) -> Response:
    """A change to one of the visitor's devices, back on its page; to the page's script, its
    answer as JSON (`{"message"}`, or `{"error"}` with 400, 404 for a device not theirs)."""
    device = await visit.owned()
    if not _wants_json(visit):
        if device is None:
            return visit.not_found()
        return await visit.act(group_url(device), lambda: change(device))
    if device is None:
        return JSONResponse({"error": "There is nothing here, or it is not yours."}, 404)
    try:
        return JSONResponse({"message": await change(device)})
    except DeviceCloudError as problem:
        return JSONResponse({"error": sentence(str(problem))}, 400)


async def _write_field(visit: Visit, adding: bool) -> Response:
    """Add or change the field the form describes, as the user; the hub pushes the change."""
    cloud = visit.console.cloud

    async def write(device: Device) -> str:
        name, kind = visit.text("name"), visit.text("type")
        if kind == "file":
            upload = visit.file("file")
            if upload is None or not upload.filename:
                raise InvalidRequest("choose a file to upload")
            field = await cloud.store_file(device, name, upload.filename, await upload.read(),
                                           visit.base_url, source="user")
        else:
            value, data_type = parse_value(kind, visit.text("value"))
            write_value = cloud.add_field if adding else cloud.modify_field
            field = await write_value(device, name, value, data_type=data_type, source="user")
        return f"{'Added' if adding else 'Saved'} {field.name}."

    return await _on_field(visit, write)


@page()
async def add_field(visit: Visit) -> Response:
    return await _write_field(visit, adding=True)


@page()
async def edit_field(visit: Visit) -> Response:
    return await _write_field(visit, adding=False)


@page()
async def set_unit(visit: Visit) -> Response:
    async def change(device: Device) -> str:
        name = visit.text("name")
        unit = await visit.console.cloud.set_unit(device, name, visit.text("unit"))
        return f"{name} is now in {unit}." if unit else f"{name} has no unit now."
    return await _on_field(visit, change)


@page()
async def delete_field(visit: Visit) -> Response:
    async def change(device: Device) -> str:
        field = await visit.console.cloud.delete_field(device, visit.text("name"), source="user")
        return f"Deleted {field.name}."
    return await _on_field(visit, change)


@page()
async def history(visit: Visit) -> Response:
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    cloud = visit.console.cloud
    query = visit.request.query_params
    try:
        field = await cloud.get_field(device, query.get("name", ""))
    except DeviceCloudError:
        return visit.not_found()
    page_number = _page_number(query.get("page", "1"))
    rows, total = await cloud.history(field, page_number, HISTORY_PAGE_SIZE)
    recent, _ = await cloud.history(field, 1, CHART_POINTS)
    return visit.render("history.html", device=device, field=field, rows=rows, total=total,
                        page=page_number, pages=max(1, math.ceil(total / HISTORY_PAGE_SIZE)),
                        chart=numeric_chart(recent))
