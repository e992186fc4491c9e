"""ESP-AI values: the API's messages, how loose JSON values become record text, and the record."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import orjson

from devicecloud.core.errors import InvalidRequest
from devicecloud.core.espai.models import EspAiDevice
from devicecloud.core.models import encode_value

# Messages third-party code and firmware match on: the seed's where it gives them.
OK = "请求成功"
UPDATED = "修改成功"
UNBOUND = "解绑成功"
BOUND = "设备绑定成功"
DEVICE_NOT_FOUND = "设备未找到,请检查!"
NOTHING_TO_UNBIND = "解绑失败,请传入需要解绑的数据"
BOUND_ELSEWHERE = "该设备已被其他用户绑定,不可以重复绑定!"
UNBOUND_NOTICE = "设备已解绑,请重新配网绑定设备"
AGENT_NOT_FOUND = "超体不存在,请检查 api_key"
NO_VOICE_SERVER = "该超体未配置语音服务地址"
FIRMWARE_NOT_FOUND = "固件未找到,请检查!"
BIN_ID_TAKEN = "固件ID已被其他用户使用"
VERSION_EXISTS = "该固件的此版本已存在"
MASK = "******"

MAX_LIMIT = 9999
MAX_PAGE = 1_000_000
LOCAL_DATA_LIMIT = 8 * 1024
_BIN_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


class MissingParameter(InvalidRequest):
    """A required parameter is absent (the seed's `缺失参数:<name>`, code 401)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"缺失参数:{name}")


def text_of(value: object, name: str, limit: int) -> str:
    """A string, or a number spelled as text; anything else is InvalidRequest."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest(f"参数类型错误:{name} 应为字符串或数字")
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value)
    if len(text) > limit:
        raise InvalidRequest(f"参数错误:{name} 长度不能超过 {limit} 个字符")
    if "\0" in text:
        raise InvalidRequest(f"参数错误:{name} 不能包含 NUL 字符")
    return text


def optional_text(doc: dict[str, Any], name: str, limit: int = 128) -> str | None:
    """`doc[name]` as text; None when absent, null or empty."""
    value = doc.get(name)
    if value is None:
        return None
    text = text_of(value, name, limit)
    return text or None


def required_text(doc: dict[str, Any], name: str, limit: int = 128) -> str:
    text = optional_text(doc, name, limit)
    if text is None:
        raise MissingParameter(name)
    return text


def positive_int(doc: dict[str, Any], name: str, default: int, largest: int) -> int:
    """A whole number from 1 to `largest`, given as a number or as digits."""
    text = optional_text(doc, name, 32)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= largest:
        raise InvalidRequest(f"参数错误:{name} 应为 1 到 {largest} 之间的整数")
    return int(text)


def zero_or_one(text: str | None, name: str) -> str | None:
    if text not in (None, "0", "1"):
        raise InvalidRequest(f"参数错误:{name} 只能是 0 或 1")
    return text


def local_data_of(value: object) -> dict[str, Any]:
    """`localData`: a JSON object of modest size."""
    if not isinstance(value, dict):
        raise InvalidRequest("参数类型错误:localData 应为 JSON 对象")
    if len(encode_value(value, "localData")) > LOCAL_DATA_LIMIT:
        raise InvalidRequest(f"参数错误:localData 不能超过 {LOCAL_DATA_LIMIT} 字节")
    return value


def as_device_strings(data: dict[str, Any]) -> dict[str, str]:
    """The values firmware stores: strings as they are, null as "", anything else as JSON."""
    return {key: value if isinstance(value, str) else "" if value is None
            else orjson.dumps(value).decode() for key, value in data.items()}


def check_bin_id(raw: object) -> str:
    if not isinstance(raw, str) or not _BIN_ID.fullmatch(raw):
        raise InvalidRequest("参数错误:bin_id 应为 1 到 64 个字母、数字、点、下划线或连字符")
    return raw


def voice_server(url: str) -> dict[str, Any]:
    """`http://host:port/path` (or ws://, https://, wss://) as the firmware wants it."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" of an IPv6 address
        raise InvalidRequest(f"not a voice server address: {url!r}") from None
    secure = parts.scheme in ("https", "wss")
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise InvalidRequest(f"not a voice server address: {url!r} (want http://host:port/path)")
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError:
        raise InvalidRequest(f"bad port in {url!r}") from None
    return {"ip": parts.hostname, "port": port, "protocol": "https" if secure else "http",
            "path": parts.path}


def _phone(text: str) -> int | str | None:
    if not text:
        return None
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 15 else text


def record(device: EspAiDevice, online: bool) -> dict[str, Any]:
    """The device row of `/devices/list`, in the seed's order (plus `battery`)."""
    text = device.text
    wifi_pwd = text["wifi_pwd"]
    if device.mask_wifi_pwd and wifi_pwd:
        wifi_pwd = MASK
    return {
        "id": device.public_id, "create_time": device.created_at,
        "update_time": device.updated_at, "sort": device.sort,
        "ext1": text["ext1"], "ext2": text["ext2"], "ext3": text["ext3"], "name": text["name"],
        "user_id": None if device.owner_id is None else str(device.owner_id),
        "equipment_id": device.agent_id, "api_key": device.api_key, "enable": text["enable"],
        "is_online": "1" if online else "0", "device_id": device.device_id,
        "wifi_ssid": text["wifi_ssid"], "wifi_pwd": wifi_pwd, "net_ip": text["net_ip"],
        "version": text["version"], "bin_id": text["bin_id"], "nation": text["nation"],
        "province": text["province"], "city": text["city"], "type": text["type"],
        "memory": text["memory"], "latitude": text["latitude"], "longitude": text["longitude"],
        "user_name": device.user_name or None, "user_phone": _phone(device.user_phone),
        "battery": device.battery,
    }
