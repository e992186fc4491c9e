"""The EzData2 device envelope (WebSocket and MQTT): parse device messages, format replies.

Replies are compact JSON with numeric `code` and `cmd`, because some firmwares search the raw
text for `"code":200` and `"cmd":105`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from devicecloud.core.errors import InvalidRequest
from devicecloud.core.models import loads

LOGIN_OK = "device Login successful"
PONG = "pong"


class Command(IntEnum):
    """An envelope's `cmd`: what a device asks (a request, answered with the same `cmd`), what it
    is told unasked (a push), or an error. Serialised as its number."""

    ADD = 100  # add a field; a name already taken gets a suffix: `name(1)`, ...
    MODIFY = 101  # change an existing field's value (StamPLC's `set(...)` upserts instead)
    DELETE = 102
    LIST = 103  # every field of the device
    READ = 104  # one field
    FILE_UPLOADED = 105  # push: a field now holds the URL of an uploaded file
    BOUND = 106  # push: a user bound the device
    MODIFIED = 107  # push: a field was changed by someone else (a user, the API, another link)
    DELETED = 108  # push: a field was deleted by someone else
    ADDED = 109  # push: a field was added by someone else
    PAIR_CODE = 112  # a pairing code for the device's owner-to-be to type into the console
    ERROR = 500  # an error tied to no request: a malformed message, a refused login


REQUESTS: dict[int, Command] = {int(c): c for c in (
    Command.ADD, Command.MODIFY, Command.DELETE, Command.LIST, Command.READ, Command.PAIR_CODE)}
"""The request types a device may send, by number."""
_ERROR = Command.ERROR  # a module global: Python 3.11 reads an enum member in ~150 ns
_REQUEST_ALIASES = {"DEVICE_DATA_LIST": Command.LIST}


class ProtocolError(Exception):
    """A message the device got wrong; answered with code 500 and `cmd` (500 or the request's)."""

    def __init__(self, message: str, cmd: int = Command.ERROR) -> None:
        super().__init__(message)
        self.cmd = cmd


@dataclass(slots=True, frozen=True)
class Login:
    token: str


@dataclass(slots=True, frozen=True)
class Ping:
    token: object


@dataclass(slots=True, frozen=True)
class Request:
    """A device request; `upsert` marks StamPLC's `set(...)`, answered like MODIFY."""

    token: object
    cmd: Command
    body: dict[str, Any]
    upsert: bool = False


Message = Login | Ping | Request


def _request_type(raw: object) -> Command:
    if isinstance(raw, bool):
        raise ProtocolError("requestType must be a number")
    if isinstance(raw, str):
        raw = _REQUEST_ALIASES.get(raw.strip(), raw.strip())
        if isinstance(raw, str) and raw.isascii() and raw.isdigit():  # not "²"
            raw = int(raw)
    if isinstance(raw, int) and (command := REQUESTS.get(raw)) is not None:
        return command
    if raw is None:
        raise ProtocolError("missing requestType")
    raise ProtocolError(f"unknown requestType: {str(raw)[:20]}")


def _loads(data: bytes | str, invalid: str, cmd: int) -> Any:
    try:
        return loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError(invalid, cmd) from None
    except InvalidRequest as problem:
        raise ProtocolError(str(problem), cmd) from None


def parse(data: bytes | str) -> Message:
    """One device message: a login, a heartbeat or a request. Raises ProtocolError."""
    if data[:4] in (b"get(", b"set(", "get(", "set("):
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        return parse_text_command(text)
    doc = _loads(data, "invalid JSON", _ERROR)
    if not isinstance(doc, dict):
        raise ProtocolError("message must be a JSON object")
    token = doc.get("deviceToken")
    if "body" not in doc:
        if not isinstance(token, str) or not token:
            raise ProtocolError("missing deviceToken")
        return Login(token)
    body = doc["body"]
    if body == "ping":
        return Ping(token)
    if not isinstance(body, dict):
        raise ProtocolError("body must be an object with a requestType, or \"ping\"")
    return Request(token, _request_type(body.get("requestType")), body)


def parse_text_command(text: str) -> Request:
    """StamPLC's `get(<token>,<key>)` and `set(<token>,<key>,<JSON value>,<dataType>)`.

    The JSON value may itself contain commas: split off the first two commas and the last one.
    """
    text = text.strip()
    verb, _, rest = text.partition("(")
    if not rest.endswith(")") or verb not in ("get", "set"):
        raise ProtocolError("unknown text command: expected get(...) or set(...)")
    args = rest[:-1]
    if verb == "get":
        token, comma, key = args.partition(",")
        if not comma or not key:
            raise ProtocolError("get needs a token and a key")
        return Request(token.strip(), Command.READ, {"name": key.strip()})
    token, _, rest = args.partition(",")
    key, _, rest = rest.partition(",")
    raw_value, comma, data_type = rest.rpartition(",")
    if not comma or not key:
        raise ProtocolError("set needs a token, a key, a JSON value and a data type",
                            Command.MODIFY)
    value = _loads(raw_value, "set: the value is not valid JSON", Command.MODIFY)
    return Request(token.strip(), Command.MODIFY, {"name": key.strip(), "value": value,
                                                   "dataType": data_type.strip()}, upsert=True)


def require(body: dict[str, Any], key: str, cmd: int) -> Any:
    """`body[key]`, or a ProtocolError naming what is missing."""
    if key not in body:
        raise ProtocolError(f"missing {key}", cmd)
    return body[key]


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


def reply(cmd: int, body: Any, value: Any = None, with_value: bool = False) -> bytes:
    """A success envelope; `with_value` adds the field's value at the top level (MQTT)."""
    doc: dict[str, Any] = {"body": body, "cmd": cmd, "code": 200, "msg": "OK"}
    if with_value:
        doc["value"] = value
    return orjson.dumps(doc)


def error(message: str, cmd: int = Command.ERROR) -> bytes:
    """An error envelope: code 500, a readable msg, data null."""
    return orjson.dumps({"cmd": cmd, "code": 500, "msg": message, "data": None})
