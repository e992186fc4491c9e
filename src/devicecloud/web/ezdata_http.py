"""EzData over HTTP: registration, file uploads, and the REST API of UiFlow2's EzData blocks."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devicecloud.core.errors import Conflict, DeviceCloudError, InvalidRequest, NotFound
from devicecloud.core.models import Device, Field, HistoryEntry
from devicecloud.core.service import (
    MAX_HISTORY_PAGE,
    MAX_HISTORY_SIZE,
    DeviceCloud,
    check_page,
)
from devicecloud.web.console.pages import client_address
from devicecloud.web.errors import ezdata_refusal
from devicecloud.web.requests import base_url, json_object
from devicecloud.web.responses import ez_error, ez_ok, file_download
from devicecloud.web.services import services
from devicecloud.web.uploads import stream_upload

_PAGE_NUMBER = re.compile(r"[0-9]{1,9}")  # str.isdigit() would take "²", which int() refuses
Handler = Callable[[Request], Awaitable[Any]]


def _cloud(request: Request) -> DeviceCloud:
    return services(request).cloud


def ezdata(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler's result as `{"code":200,...}` and its refusals as `{"code":500,...}`."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return ez_ok(await handler(request))
        except (DeviceCloudError, MultiPartException) as problem:
            return ezdata_refusal(problem)

    return endpoint


async def _json_object(request: Request) -> dict[str, Any]:
    return await json_object(request, "invalid JSON", "body must be a JSON object")


def _required(doc: Any, key: str) -> Any:
    if key not in doc:
        raise InvalidRequest(f"missing {key}")
    return doc[key]


async def _device(request: Request) -> Device:
    """The device of the path's token, counted under `device.messages`."""
    device = await _cloud(request).authenticate(request.path_params["token"])
    await _count_message(request, device)
    return device


async def _count_message(request: Request, device: Device) -> None:
    await services(request).limits.device_messages.enforce(device.id)


def _history_rows(field: Field, rows: list[HistoryEntry], total: int) -> dict[str, Any]:
    return {"rows": [{"name": field.name, "value": row.value, "dataType": row.data_type,
                      "createTime": str(row.created_at)} for row in rows],
            "total": total}


def _page(request: Request) -> tuple[int, int]:
    """`pageNum` (or `page`) and `pageSize` (or `size`), checked before any read."""
    query = request.query_params
    page = query.get("pageNum") or query.get("page") or "1"
    size = query.get("pageSize") or query.get("size") or "100"
    if not (_PAGE_NUMBER.fullmatch(page) and _PAGE_NUMBER.fullmatch(size)):
        raise InvalidRequest(f"pageNum (1 to {MAX_HISTORY_PAGE}) and pageSize (1 to "
                             f"{MAX_HISTORY_SIZE}) must be whole numbers")
    return check_page(int(page), int(size))


async def _store_upload(request: Request, device: Device | None) -> dict[str, Any]:
    """A multipart upload, streamed to the blob store's disk: without a device (the firmware's
    `uploadDeviceFile`) the `deviceToken` field is checked as soon as it arrives, and always
    before the file is kept."""
    cloud = _cloud(request)
    settings = services(request).settings
    owner: list[Device] = [device] if device is not None else []

    async def check(name: str, value: str) -> None:
        if name == "deviceToken" and not owner:
            owner.append(await cloud.authenticate(value))

    upload = await stream_upload(request, settings.upload_limit, cloud.blobs, check)
    try:
        if not owner:
            owner.append(await cloud.authenticate(upload.fields.get("deviceToken")))
        if device is None:
            await _count_message(request, owner[0])
        name = upload.fields.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("name cannot be empty")
        if upload.spool is None or upload.file_field != "file":
            raise InvalidRequest("file cannot be empty")
        field = await cloud.store_file(owner[0], name, upload.file_name or name, upload.spool,
                                       base_url(request))
    finally:
        upload.discard()
    return {"deviceToken": owner[0].token, "name": field.name, "value": field.value}


# Device endpoints -----------------------------------------------------------------------------

@ezdata
async def register_mac(request: Request) -> str:
    await services(request).limits.ip_register.enforce(client_address(request))
    body = await _json_object(request)
    device = await _cloud(request).register_mac(body.get("mac"), body.get("deviceType"))
    return device.token


@ezdata
async def upload_device_file(request: Request) -> dict[str, Any]:
    return await _store_upload(request, None)


@ezdata
async def release_user(request: Request) -> str | None:
    """A device asks to leave its owner: done at once if it has none, else when the owner
    confirms (see `DeviceCloud.request_release`)."""
    outcome = await _cloud(request).request_release(await _device(request))
    if outcome == "refused":
        raise Conflict("the owner keeps this device; ask them to release it in the console")
    if outcome == "requested":
        return ("release requested: the owner confirms it in the console, or it takes effect "
                "in 24 hours")
    return None


# The REST API, by device token ------------------------------------------------------------------

@ezdata
async def add(request: Request) -> dict[str, Any]:
    device = await _device(request)
    body = await _json_object(request)
    field = await _cloud(request).upsert_field(
        device, body.get("name"), _required(body, "value"), data_type=body.get("dataType"),
        permissions=body.get("permissions"), source="api")
    return field.record(times_as_text=True)


@ezdata
async def upload_file(request: Request) -> dict[str, Any]:
    return await _store_upload(request, await _device(request))


@ezdata
async def data_by_key(request: Request) -> dict[str, Any]:
    field = await _cloud(request).get_field(await _device(request), request.path_params["key"])
    return field.record(times_as_text=True)


@ezdata
async def history_by_key(request: Request) -> dict[str, Any]:
    cloud = _cloud(request)
    page = _page(request)
    field = await cloud.get_field(await _device(request), request.path_params["key"])
    return _history_rows(field, *await cloud.history(field, *page))


@ezdata
async def list_fields(request: Request) -> dict[str, Any]:
    fields = await _cloud(request).list_fields(await _device(request))
    return {"rows": [field.record(times_as_text=True) for field in fields], "total": len(fields)}


@ezdata
async def delete(request: Request) -> dict[str, Any]:
    field = await _cloud(request).delete_field(await _device(request),
                                               request.path_params["key"], source="api")
    return field.record(times_as_text=True)


# Public reads by data token -----------------------------------------------------------------------

@ezdata
async def public_data(request: Request) -> dict[str, Any]:
    field = await _cloud(request).public_field(request.path_params["data_token"])
    return field.record(times_as_text=True)


@ezdata
async def public_history(request: Request) -> dict[str, Any]:
    cloud = _cloud(request)
    page = _page(request)
    field = await cloud.public_field(request.path_params["data_token"])
    return _history_rows(field, *await cloud.history(field, *page))


@ezdata
async def status(request: Request) -> dict[str, Any]:
    """devicecloud's own addition: whether the device is online, how, and when it was last seen."""
    device = await _device(request)
    status = await services(request).presence.status(device.token)
    return {"online": status.online, "transports": list(status.transports),
            "lastSeen": device.last_seen_at, "deviceType": device.device_type, "mac": device.mac}


async def download(request: Request) -> Response:
    """A stored file, at a URL that ends in the file's own name and extension."""
    cloud = _cloud(request)
    try:
        stored = await cloud.get_file(request.path_params["file_id"])
    except NotFound as problem:
        return ez_error(str(problem), 404)
    found = file_download(cloud.blobs, stored.id, stored.file_name, request.path_params["name"],
                          stored.content_type, untrusted=True)
    return found or ez_error("no such file", 404)


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v2/device/registerMac", register_mac, methods=["POST"]),
        Route("/api/v2/device/uploadDeviceFile", upload_device_file, methods=["POST"]),
        Route("/api/v2/device/releaseUser/{token}", release_user, methods=["POST"]),
        Route("/api/v2/{token}/add", add, methods=["POST"]),
        Route("/api/v2/{token}/uploadFile", upload_file, methods=["POST"]),
        Route("/api/v2/{token}/dataByKey/{key:path}", data_by_key, methods=["GET"]),
        Route("/api/v2/{token}/historyByKey/{key:path}", history_by_key, methods=["GET"]),
        Route("/api/v2/{token}/list", list_fields, methods=["GET"]),
        Route("/api/v2/{token}/delete/{key:path}", delete, methods=["DELETE"]),
        Route("/api/v2/{data_token}/data", public_data, methods=["GET"]),
        Route("/api/v2/{data_token}/history", public_history, methods=["GET"]),
        Route("/api/v1/devices/{token}/status", status, methods=["GET"]),
        Route("/files/{file_id}/{name}", download, methods=["GET", "HEAD"]),
    ]
