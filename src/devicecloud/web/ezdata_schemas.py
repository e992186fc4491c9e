"""Request and response shapes of EzData's HTTP API (web/ezdata_http.py), for the OpenAPI document.

Every answer is `{"code":200,"msg":"OK","data":...}`, or a refusal `{"code":500,"msg":...,
"data":null}`, over HTTP 200 (a malformed upload is a 400, a body over the limit a 413, too many
requests from one address or for one device a 429, a path no route takes a 404).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from devicecloud.core.service import MAX_HISTORY_PAGE, MAX_HISTORY_SIZE
from devicecloud.web.openapi import Operation

TOKEN = "4fbb52fb5b6243e083377f45d216820f"


class Refusal(BaseModel):
    """Refused: `code` 500 and the reason in `msg` (HTTP 200, or the status named above)."""

    code: Literal[500] = 500
    msg: str = Field(examples=["no such device"])
    data: None = None


class Ok(BaseModel):
    """Done: `code` 200 and `msg` OK."""

    code: Literal[200] = 200
    msg: str = Field(examples=["OK"])


class RegisterRequest(BaseModel):
    """The device's MAC (any spelling: `AA:BB:CC:DD:EE:FF`, `aabbccddeeff`) and its type."""

    mac: str = Field(examples=["AA:BB:CC:DD:EE:FF"])
    deviceType: str | None = Field(None, examples=["basic"])


class TokenAnswer(Ok):
    """The device's token: the same MAC always gets the same one."""

    data: str = Field(examples=[TOKEN])


class DeviceUpload(BaseModel):
    """multipart/form-data: the device's token, the field's name and the file."""

    deviceToken: str = Field(examples=[TOKEN])
    name: str = Field(examples=["photo"])
    file: bytes = Field(json_schema_extra={"format": "binary"})


class FieldUpload(BaseModel):
    """multipart/form-data: the field's name and the file."""

    name: str = Field(examples=["photo"])
    file: bytes = Field(json_schema_extra={"format": "binary"})


class FileField(BaseModel):
    deviceToken: str
    name: str
    value: str = Field(description="the file's URL")


class UploadAnswer(Ok):
    """The field that holds the file's URL; the device's live connections get push 105."""

    data: FileField


class ReleaseAnswer(Ok):
    """Released at once (`data` null), or asked of the owner (`data` says so)."""

    data: str | None


class AddRequest(BaseModel):
    """A field to add or change (by name)."""

    name: str = Field(examples=["temp"])
    value: Any = Field(examples=[23])
    dataType: str | None = Field(None, description="number, string, boolean, json...",
                                 examples=["number"])
    permissions: str | None = Field(None, description='"1" the device may change it',
                                    examples=["1"])


class FieldRecord(BaseModel):
    id: str
    dataToken: str = Field(description="reads the field without the device token")
    name: str = Field(examples=["temp"])
    value: Any = Field(examples=[23])
    dataType: str = Field(examples=["number"])
    createTime: str = Field(description="epoch ms, as digits")
    updateTime: str = Field(description="epoch ms, as digits")


class FieldAnswer(Ok):
    """The field."""

    data: FieldRecord


class FieldRows(BaseModel):
    rows: list[FieldRecord]
    total: int


class FieldListAnswer(Ok):
    """Every field of the device."""

    data: FieldRows


class HistoryRow(BaseModel):
    name: str
    value: Any
    dataType: str
    createTime: str = Field(description="epoch ms, as digits")


class HistoryRows(BaseModel):
    rows: list[HistoryRow]
    total: int


class HistoryAnswer(Ok):
    """One page of the field's values, newest first, and the count of all."""

    data: HistoryRows


class HistoryQuery(BaseModel):
    pageNum: int = Field(1, ge=1, le=MAX_HISTORY_PAGE, description="1-based page (or `page`)")
    pageSize: int = Field(100, ge=1, le=MAX_HISTORY_SIZE,
                          description="values per page (or `size`)")


class DeviceStatus(BaseModel):
    online: bool
    transports: list[str] = Field(examples=[["mqtt"]])
    lastSeen: int | None = Field(description="epoch ms")
    deviceType: str
    mac: str


class StatusAnswer(Ok):
    """Whether the device is online, over which transports, and when it was last seen."""

    data: DeviceStatus


class NoPath(BaseModel):
    """No such file, or a path no route takes (a key with a line break): HTTP 404, `code` 500."""

    code: Literal[500] = 500
    msg: str = Field(examples=["Not Found"])
    data: None = None


_DEVICE = "EzData: devices"
_REST = "EzData: the REST API (by device token)"
_PUBLIC = "EzData: public reads (by data token)"
_UPLOAD_ERRORS = ((400, Refusal), (413, Refusal), (429, Refusal))
_NO_PATH = ((404, NoPath),)
_BY_TOKEN = (*_NO_PATH, (429, Refusal))  # a device's requests are limited (`device.messages`)
_TOKEN = ("token",)
_FIELD = ("token", "key")

OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/api/v2/device/registerMac", "Register a device by MAC: its token",
              _DEVICE, (TokenAnswer, Refusal), body=RegisterRequest, errors=((429, Refusal),)),
    Operation("POST", "/api/v2/device/uploadDeviceFile", "Upload a file as the device",
              _DEVICE, (UploadAnswer, Refusal), body=DeviceUpload,
              body_media_type="multipart/form-data", errors=_UPLOAD_ERRORS),
    Operation("POST", "/api/v2/device/releaseUser/{token}", "Leave the device's owner",
              _DEVICE, (ReleaseAnswer, Refusal), path_params=_TOKEN, errors=_BY_TOKEN,
              description="Done at once if the device has no owner; else the owner confirms it "
                          "in the console, or it takes effect in 24 hours."),
    Operation("POST", "/api/v2/{token}/add", "Add or change a field", _REST,
              (FieldAnswer, Refusal), body=AddRequest, path_params=_TOKEN, errors=_BY_TOKEN,
              description="The device's live connections get push 109 (added) or 107 "
                          "(changed)."),
    Operation("POST", "/api/v2/{token}/uploadFile", "Upload a file into a field", _REST,
              (UploadAnswer, Refusal), body=FieldUpload, body_media_type="multipart/form-data",
              path_params=_TOKEN, errors=(*_UPLOAD_ERRORS, *_BY_TOKEN)),
    Operation("GET", "/api/v2/{token}/dataByKey/{key}", "A field by name", _REST,
              (FieldAnswer, Refusal), path_params=_FIELD, errors=_BY_TOKEN),
    Operation("GET", "/api/v2/{token}/historyByKey/{key}", "A field's history by name", _REST,
              (HistoryAnswer, Refusal), path_params=_FIELD, query=HistoryQuery,
              errors=_BY_TOKEN),
    Operation("GET", "/api/v2/{token}/list", "Every field of the device", _REST,
              (FieldListAnswer, Refusal), path_params=_TOKEN, errors=_BY_TOKEN),
    Operation("DELETE", "/api/v2/{token}/delete/{key}", "Delete a field by name", _REST,
              (FieldAnswer, Refusal), path_params=_FIELD, errors=_BY_TOKEN,
              description="The device's live connections get push 108 (deleted)."),
    Operation("GET", "/api/v2/{data_token}/data", "A field by its data token", _PUBLIC,
              (FieldAnswer, Refusal), path_params=("data_token",), errors=_NO_PATH),
    Operation("GET", "/api/v2/{data_token}/history", "A field's history by its data token",
              _PUBLIC, (HistoryAnswer, Refusal), path_params=("data_token",),
              query=HistoryQuery, errors=_NO_PATH),
    Operation("GET", "/api/v1/devices/{token}/status", "The device's live status", _REST,
              (StatusAnswer, Refusal), path_params=_TOKEN, errors=_BY_TOKEN),
    Operation("GET", "/files/{file_id}/{name}", "Download an uploaded file", _PUBLIC, (),
              path_params=("file_id", "name"), response_media_type="*/*",
              errors=_NO_PATH),
)
