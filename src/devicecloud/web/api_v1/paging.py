"""Lists of /api/v1: `?limit=` (default 100, at most 1000) and an opaque `cursor`, answered as
`{"items": [...], "next_cursor": "..." | null}`.

A cursor is the base64url (unpadded) JSON of the sort key of the last item given: a list of
integers and strings. The order behind it is stable, so walking the cursors lists every item
once, whatever is added or removed meanwhile (an item added behind the cursor is not seen).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from devicecloud.core.errors import InvalidRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 512
Key = tuple[int | str, ...]
BAD_CURSOR = "cursor: not a cursor this API gave out (pass `next_cursor` back unchanged)"


def limit_of(params: QueryParams) -> int:
    """`limit`: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent."""
    raw = params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
        raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}, not {raw[:20]!r}")
    return int(raw)


def encode_cursor(key: Key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).rstrip(b"=").decode()


def cursor_of(params: QueryParams, shape: Sequence[type[int] | type[str]]) -> Key | None:
    """The key in `cursor` (None when absent): InvalidRequest naming `cursor` unless it decodes
    to a key of `shape`'s types."""
    raw = params.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        if len(raw) > MAX_CURSOR or not raw.isascii():
            raise ValueError(raw)
        key = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidRequest(BAD_CURSOR) from None
    if not isinstance(key, list) or len(key) != len(shape) or not all(
            type(part) is kind for part, kind in zip(key, shape, strict=False)):
        raise InvalidRequest(BAD_CURSOR)
    return tuple(key)


def page_of(items: list[dict[str, Any]], last_key: Key | None) -> dict[str, Any]:
    """The answer: the items and the cursor after `last_key` (None: the list is over)."""
    return {"items": items,
            "next_cursor": None if last_key is None else encode_cursor(last_key)}
