"""The ESP-AI open platform's HTTP API: device management for third-party servers (authorised by
the account's open_api_key), the firmware's own calls, and firmware images.

Every answer is HTTP 200 with the seed's envelope: `{"success":true,"message":...,"data":...}` or
`{"success":false,"message":...,"code":N}` (only a firmware download that is not there is a 404).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devicecloud.core.errors import InvalidRequest, NotFound, TooMany, Unauthorized
from devicecloud.core.espai import values as v
from devicecloud.core.espai.firmware import firmware_record
from devicecloud.core.espai.platform import EspAi
from devicecloud.core.models import Account
from devicecloud.web import espai_schemas as s
from devicecloud.web.errors import UNEXPECTED, answer_for
from devicecloud.web.openapi import Operation
from devicecloud.web.requests import base_url, json_body, json_object
from devicecloud.web.responses import file_download, json_response
from devicecloud.web.services import services
from devicecloud.web.uploads import stream_upload

log = logging.getLogger(__name__)

NO_KEY = "未授权:请在请求头 authorization 中传入 open_api_key"
BAD_KEY = "未授权:open_api_key 无效"
BAD_JSON = "参数格式错误:请求体不是合法的 JSON"
NOT_OBJECT = "参数格式错误:请求体应为 JSON 对象"
NOT_ARRAY = '参数格式错误:请求体应为数组,例如 [{"id": "..."}]'
UPLOADED = "上传成功"
DELETED = "删除成功"
_NO_DATA = object()


def ok(message: str, data: Any = _NO_DATA, **extra: Any) -> Response:
    doc: dict[str, Any] = {"success": True, "message": message}
    if data is not _NO_DATA:
        doc["data"] = data
    return json_response({**doc, **extra})


def fail(message: str, code: int, status_code: int = 200) -> Response:
    return json_response({"success": False, "message": message, "code": code}, status_code)


def envelope(handler: Callable[[Request], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
    """Answer the core's refusals, and unexpected failures, in the failure envelope."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as problem:
            answer = answer_for(problem)
            if answer is UNEXPECTED:
                log.exception("%s failed", request.url.path)
            if isinstance(problem, TooMany):  # HTTP 429, as every client's retry logic knows
                return json_response({"success": False, "message": str(problem), "code": 429},
                                     429, {"Retry-After": str(problem.retry_after)})
            return fail(answer.espai_text(problem), answer.espai_code)

    return endpoint


def _espai(request: Request) -> EspAi:
    return services(request).espai


async def _account(request: Request) -> Account:
    """The account whose open_api_key is in the `authorization` header."""
    key = request.headers.get("authorization", "").strip()
    if key[:7].lower() == "bearer ":
        key = key[7:].strip()
    if not key:
        raise Unauthorized(NO_KEY)
    running = services(request)
    try:
        account = await running.accounts.by_api_key(key)
    except Unauthorized:
        raise Unauthorized(BAD_KEY) from None
    await running.limits.account_call(account.id)
    return account


async def _object(request: Request) -> dict[str, Any]:
    """The JSON object of the body (no body: `{}`)."""
    return await json_object(request, BAD_JSON, NOT_OBJECT, optional=True)


async def _ids(request: Request) -> list[str]:
    """A body `[{"id": "..."}, ...]` (no body: an empty list)."""
    doc = await json_body(request, BAD_JSON, optional=True)
    if doc is None:
        return []
    if not isinstance(doc, list) or not all(isinstance(item, dict) for item in doc):
        raise InvalidRequest(NOT_ARRAY)
    ids = []
    for item in doc:
        if item.get("id") in (None, ""):
            raise v.MissingParameter("id")
        if not isinstance(item["id"], str):
            raise InvalidRequest("参数类型错误:id 应为字符串")
        ids.append(item["id"])
    return ids


# Third-party device management -------------------------------------------------------------------

@envelope
async def list_devices(request: Request) -> Response:
    account = await _account(request)
    rows, total = await _espai(request).devices.query(account, await _object(request))
    return ok(v.OK, rows, totalNumber=total)


@envelope
async def update_device(request: Request) -> Response:
    account = await _account(request)
    return ok(v.UPDATED, await _espai(request).devices.update(account, await _object(request)))


@envelope
async def delete_devices(request: Request) -> Response:
    account = await _account(request)
    await _espai(request).devices.delete(account, await _ids(request))
    return ok(v.UNBOUND)


@envelope
async def unbind_device(request: Request) -> Response:
    account = await _account(request)
    await _espai(request).devices.unbind(account, await _object(request))
    return ok(v.UNBOUND)


# The firmware's calls ----------------------------------------------------------------------------

@envelope
async def add_device(request: Request) -> Response:
    espai = _espai(request)
    device = await espai.devices.add(await _object(request))
    return ok(v.BOUND, await espai.devices.record(device))


@envelope
async def server_info(request: Request) -> Response:
    api_key = request.query_params.get("api_key")
    return ok(v.OK, await _espai(request).agents.server_info(api_key))


@envelope
async def query_new_ota(request: Request) -> Response:
    """Unmodified firmware sends only `version`, `bin_id` and `is_official`: the asking device is
    known by the address of its firmware socket. A firmware may add `api_key` (its agent's)."""
    query = request.query_params
    return ok(v.OK, await _espai(request).firmware.query_ota(
        query.get("version", ""), query.get("bin_id", ""), base_url(request),
        address=request.client.host if request.client else "",
        api_key=query.get("api_key", ""), device_id=query.get("device_id", "")))


@envelope
async def position(request: Request) -> Response:
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    ip = forwarded or (request.client.host if request.client else "")
    return ok(v.OK, {"ip": ip, "country_name": "", "region": "", "city": "", "latitude": "",
                     "longitude": ""})


# Firmware images ---------------------------------------------------------------------------------

@envelope
async def upload_firmware(request: Request) -> Response:
    """The key is checked before the body is read; the file streams to the blob store's disk."""
    account = await _account(request)
    firmware = _espai(request).firmware
    upload = await stream_upload(request, services(request).settings.firmware_limit, firmware.blobs)
    try:
        if upload.spool is None or upload.file_field != "file":
            raise v.MissingParameter("file")
        bin_id = upload.fields.get("bin_id")
        if bin_id in (None, ""):
            raise v.MissingParameter("bin_id")
        image = await firmware.upload(account, bin_id, upload.fields.get("version"),
                                      upload.file_name or "firmware.bin", upload.spool)
    finally:
        upload.discard()
    return ok(UPLOADED, firmware_record(image, base_url(request)))


@envelope
async def list_firmware(request: Request) -> Response:
    account = await _account(request)
    base = base_url(request)
    images = await _espai(request).firmware.of(account)
    return ok(v.OK, [firmware_record(image, base) for image in images],
              totalNumber=len(images))


@envelope
async def delete_firmware(request: Request) -> Response:
    account = await _account(request)
    ids = await _ids(request)
    if not ids:
        raise InvalidRequest("删除失败,请传入需要删除的数据")
    firmware = _espai(request).firmware
    for firmware_id in ids:
        await firmware.delete(account, firmware_id)
    return ok(DELETED)


async def download_firmware(request: Request) -> Response:
    """An image, at the URL `query_new_ota` hands out (no key needed: the id is the secret)."""
    firmware = _espai(request).firmware
    try:
        image = await firmware.get(request.path_params["firmware_id"])
    except NotFound as problem:
        return fail(str(problem), 404, 404)
    found = file_download(firmware.blobs, image.id, image.file_name, request.path_params["name"],
                          "application/octet-stream")
    return found or fail(v.FIRMWARE_NOT_FOUND, 404, 404)


def routes() -> list[BaseRoute]:
    return [
        Route("/devices/list", list_devices, methods=["POST"]),
        Route("/devices/update", update_device, methods=["POST"]),
        Route("/devices/del", delete_devices, methods=["POST"]),
        Route("/devices/unbind", unbind_device, methods=["POST"]),
        Route("/devices/add", add_device, methods=["POST"]),
        Route("/sdk/get_server_info_by_api_key", server_info, methods=["GET"]),
        Route("/sdk/query_new_ota", query_new_ota, methods=["GET"]),
        Route("/sdk/position", position, methods=["GET"]),
        Route("/firmware/upload", upload_firmware, methods=["POST"]),
        Route("/firmware/list", list_firmware, methods=["POST"]),
        Route("/firmware/del", delete_firmware, methods=["POST"]),
        Route("/firmware/{firmware_id}/{name}", download_firmware, methods=["GET", "HEAD"]),
    ]


_KEY = "open_api_key"
_THIRD = "ESP-AI device management (third-party servers)"
_FIRMWARE_SIDE = "ESP-AI firmware"
_IMAGES = "ESP-AI firmware images"

OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/devices/list", "List the account's devices", _THIRD,
              (s.DeviceListResponse, s.Failure), body=s.DeviceListRequest, security=_KEY,
              description="Exact filters, except `name` (substring); 1-based paging; "
                          "`totalNumber` counts every match. Stable order: oldest first."),
    Operation("POST", "/devices/update", "Change a device", _THIRD,
              (s.DeviceUpdateResponse, s.Failure), body=s.DeviceUpdateRequest, security=_KEY,
              description="Answers only the fields that changed, with the update time. "
                          "`localData` goes to the device as `set_local_data` if connected."),
    Operation("POST", "/devices/del", "Unbind devices by id", _THIRD, (s.Done, s.Failure),
              body=s.DeviceDeleteRequest, security=_KEY),
    Operation("POST", "/devices/unbind", "Unbind a device by MAC from an agent", _THIRD,
              (s.Done, s.Failure), body=s.DeviceUnbindRequest, security=_KEY),
    Operation("POST", "/devices/add", "Bind a device to the agent of an api_key",
              _FIRMWARE_SIDE, (s.DeviceAddResponse, s.Failure), body=s.DeviceAddRequest,
              description="A device of another account is refused (the message contains "
                          "不可以重复绑定); adding again to the same account succeeds."),
    Operation("GET", "/sdk/get_server_info_by_api_key", "The agent's voice server",
              _FIRMWARE_SIDE, (s.ServerInfoResponse, s.Failure), query=s.ApiKeyQuery),
    Operation("GET", "/sdk/query_new_ota", "Whether a newer firmware image exists",
              _FIRMWARE_SIDE, (s.OtaResponse, s.Failure), query=s.OtaQuery),
    Operation("GET", "/sdk/position", "The caller's address and place", _FIRMWARE_SIDE,
              (s.PositionResponse,)),
    Operation("POST", "/firmware/upload", "Upload a firmware image", _IMAGES,
              (s.FirmwareResponse, s.Failure), body=s.FirmwareUpload,
              body_media_type="multipart/form-data", security=_KEY),
    Operation("POST", "/firmware/list", "The account's firmware images", _IMAGES,
              (s.FirmwareListResponse, s.Failure), body=s.Nothing, security=_KEY),
    Operation("POST", "/firmware/del", "Delete firmware images by id", _IMAGES,
              (s.Done, s.Failure), body=s.DeviceDeleteRequest, security=_KEY),
    Operation("GET", "/firmware/{firmware_id}/{name}", "Download an image", _IMAGES,
              (), path_params=("firmware_id", "name"),
              response_media_type="application/octet-stream", errors=((404, s.Missing),)),
)
