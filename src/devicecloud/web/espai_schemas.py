"""Request and response shapes of the ESP-AI API, for its OpenAPI document.

The handlers check requests themselves (to answer in the seed's envelope with its messages); these
models say what they accept and what they answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

Loose = str | int | float


def _text(description: str, example: Any = None) -> Any:
    return Field(None, description=description, examples=[example] if example else None)


class Failure(BaseModel):
    """Failure: HTTP 200 with `success` false, a message and a code (401 missing or unknown key or
    missing parameter, 400 malformed request, 404 not found, 409 conflict, 413 too large, 500
    unexpected failure)."""

    success: Literal[False] = False
    message: str = Field(examples=["缺失参数:id"])
    code: int = Field(examples=[401])


class Missing(BaseModel):
    """Not found: HTTP 404 with `success` false and code 404."""

    success: Literal[False] = False
    message: str = Field(examples=["固件未找到,请检查!"])
    code: Literal[404] = 404


class Done(BaseModel):
    """Success without data."""

    success: Literal[True] = True
    message: str = Field(examples=["解绑成功"])


class DeviceRecord(BaseModel):
    """One device, as in the seed (plus `battery`)."""

    id: str = Field(description="32-hex row id", examples=["2cf661bb42b642018ee13af7150b8310"])
    create_time: int = Field(description="epoch ms")
    update_time: int | None = Field(description="epoch ms")
    sort: int | None
    ext1: str | None
    ext2: str | None
    ext3: str | None
    name: str | None = Field(examples=["小琅"])
    user_id: str | None = Field(description="the account's id")
    equipment_id: str | None = Field(description="the agent's id")
    api_key: str | None = Field(description="the agent's api_key")
    enable: str = Field(description='"0" disabled (default), "1" enabled')
    is_online: str = Field(description='"1" while any live connection of the device exists')
    device_id: str = Field(examples=["FC:01:2C:DB:14:30"])
    wifi_ssid: str | None
    wifi_pwd: str | None = Field(description='"******" when the account masks it')
    net_ip: str | None
    version: str | None
    bin_id: str | None
    nation: str | None
    province: str | None
    city: str | None
    type: str = Field(description='"0" dialogue device (default), "1" terminal device')
    memory: str | None
    latitude: str | None
    longitude: str | None
    user_name: str | None
    user_phone: int | str | None
    battery: int | None = Field(description="percent, as the device last reported it")


class DeviceListRequest(BaseModel):
    """Filters, all optional; strings or numbers. Empty strings are ignored."""

    model_config = ConfigDict(title="DeviceListRequest")

    name: Loose | None = _text("substring of the device name (case-insensitive for ASCII)",
                               "小琅")
    api_key: Loose | None = _text("the agent's api_key (not the open_api_key)")
    device_id: Loose | None = _text("MAC, any spelling", "FC:01:2C:DB:14:30")
    bin_id: Loose | None = _text("firmware id", "0")
    version: Loose | None = _text("firmware version", "1.22.34")
    enable: Loose | None = _text('"0" or "1"', "1")
    is_online: Loose | None = _text('"0" or "1"', "1")
    type: Loose | None = _text('"0" dialogue device, "1" terminal device', "0")
    page: Loose | None = _text("1-based page, default 1", "1")
    limit: Loose | None = _text("rows per page, 1 to 9999, default 9999", "10")


class DeviceListResponse(BaseModel):
    """The page of devices and `totalNumber`, the count of all that match."""

    success: Literal[True] = True
    message: str = Field(examples=["请求成功"])
    data: list[DeviceRecord]
    totalNumber: int


class DeviceUpdateRequest(BaseModel):
    """`id` and any fields to change (strings or numbers; null or absent: unchanged)."""

    id: str = Field(description="the device's 32-hex id")
    name: Loose | None = _text("device name", "小琅")
    version: Loose | None = None
    enable: Loose | None = _text('"0" or "1"', "1")
    wifi_ssid: Loose | None = None
    wifi_pwd: Loose | None = None
    net_ip: Loose | None = None
    bin_id: Loose | None = None
    nation: Loose | None = None
    province: Loose | None = None
    city: Loose | None = None
    longitude: Loose | None = None
    latitude: Loose | None = None
    localData: dict[str, Any] | None = Field(
        None, description="stored, and sent to the device as set_local_data if it is connected")


class DeviceChanges(BaseModel):
    """Only the fields whose value changed, and the update time."""

    name: str | None = None
    version: str | None = None
    enable: str | None = None
    wifi_ssid: str | None = None
    wifi_pwd: str | None = None
    net_ip: str | None = None
    bin_id: str | None = None
    nation: str | None = None
    province: str | None = None
    city: str | None = None
    longitude: str | None = None
    latitude: str | None = None
    update_time: int


class DeviceUpdateResponse(BaseModel):
    """What changed."""

    success: Literal[True] = True
    message: str = Field(examples=["修改成功"])
    data: DeviceChanges


class DeviceId(BaseModel):
    id: str = Field(examples=["b93ec353967441ada8d31b4910a3032d"])


class DeviceDeleteRequest(RootModel[list[DeviceId]]):
    """A JSON array of `{"id": ...}`; all are unbound, or none if any id is unknown."""


class DeviceUnbindRequest(BaseModel):
    """The agent's api_key and the device's MAC."""

    api_key: str = Field(examples=["xxx"])
    device_id: str = Field(examples=["XX:XX:XX:XX:XX:XX"])


class DeviceAddRequest(BaseModel):
    """What the firmware sends from its Wi-Fi setup page."""

    device_id: str = Field(examples=["FC:01:2C:DB:14:30"])
    api_key: str = Field(description="the agent's api_key")
    version: str | None = None
    bin_id: str | None = None
    wifi_ssid: str | None = None
    wifi_pwd: str | None = None


class DeviceAddResponse(BaseModel):
    """The device, bound."""

    success: Literal[True] = True
    message: str = Field(examples=["设备绑定成功"])
    data: DeviceRecord


class ApiKeyQuery(BaseModel):
    api_key: str


class ServerInfo(BaseModel):
    ip: str
    port: int
    protocol: str = Field(examples=["http"])
    path: str


class ServerInfoResponse(BaseModel):
    """Where the agent's voice server lives."""

    success: Literal[True] = True
    message: str
    data: ServerInfo


class OtaQuery(BaseModel):
    version: str = ""
    bin_id: str = ""
    is_official: str = Field("0", description="accepted and ignored")


class OtaInfo(BaseModel):
    latest: bool
    bin_url: str


class OtaResponse(BaseModel):
    """Whether the device runs the newest image of its bin_id, and that image's URL."""

    success: Literal[True] = True
    message: str
    data: OtaInfo


class Position(BaseModel):
    ip: str
    country_name: str
    region: str
    city: str
    latitude: str
    longitude: str


class PositionResponse(BaseModel):
    """The caller's address; the place fields are blank (no geolocation database)."""

    success: Literal[True] = True
    message: str
    data: Position


class FirmwareUpload(BaseModel):
    """multipart/form-data with the image."""

    bin_id: str = Field(description="letters, digits, '.', '_', '-'; one account's per server")
    version: str
    file: bytes = Field(json_schema_extra={"format": "binary"})


class FirmwareRecord(BaseModel):
    id: str
    bin_id: str
    version: str
    file_name: str
    size: int
    create_time: int
    bin_url: str


class FirmwareResponse(BaseModel):
    """The stored image."""

    success: Literal[True] = True
    message: str
    data: FirmwareRecord


class FirmwareListResponse(BaseModel):
    """The account's images, oldest first."""

    success: Literal[True] = True
    message: str
    data: list[FirmwareRecord]
    totalNumber: int


class Nothing(BaseModel):
    """An empty JSON object (or no body)."""
