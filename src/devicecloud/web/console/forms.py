"""Turning what a person typed into field values, and values back into text to edit."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from devicecloud.core.errors import InvalidRequest
from devicecloud.core.models import LARGEST_INT, SMALLEST_INT, loads

KINDS = {"number": "Number", "text": "Text", "json": "JSON", "file": "File upload"}
_INTEGER = re.compile(r"[+-]?[0-9]+")


def parse_value(kind: str, raw: object) -> tuple[Any, str | None]:
    """(value, dataType) for a value typed as `kind` ("number", "text" or "json"); the dataType
    of JSON is left to the core to infer."""
    text = raw if isinstance(raw, str) else ""
    if kind == "number":
        number = text.strip()
        if _INTEGER.fullmatch(number):
            return _whole_number(number), "number"
        try:
            value = float(number)
        except ValueError:
            raise InvalidRequest("enter a number, such as 21 or 21.5") from None
        if not math.isfinite(value):
            raise InvalidRequest("enter a finite number")
        return value, "number"
    if kind == "text":
        return text, "string"
    if kind == "json":
        try:
            return loads(text), None
        except orjson.JSONDecodeError as problem:
            raise InvalidRequest(f"that is not valid JSON ({problem})") from None
    raise InvalidRequest("choose a type: number, text, JSON or file upload")


def _whole_number(digits: str) -> int:
    number = int(digits) if len(digits) <= 21 else None  # 20 digits and a sign at most
    if number is None or not SMALLEST_INT <= number <= LARGEST_INT:
        raise InvalidRequest(f"enter a whole number from {SMALLEST_INT} to {LARGEST_INT}, or "
                             "use Text for longer numbers")
    return number


def kind_of(data_type: str, value: Any) -> str:
    """The form type a field is edited as."""
    if data_type == "file":
        return "file"
    if data_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    if data_type == "string" and isinstance(value, str):
        return "text"
    return "json"


def shown(value: Any) -> str:
    """A value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()
