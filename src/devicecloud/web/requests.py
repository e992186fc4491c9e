"""What handlers read from a request: its JSON body, within a size limit, and this server's public
base URL."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import HTTPConnection, Request

from devicecloud.core.errors import InvalidRequest
from devicecloud.core.models import loads
from devicecloud.web.services import services
from devicecloud.web.uploads import read_body

JSON_BODY_LIMIT = 256 * 1024


async def json_body(request: Request, invalid: str, optional: bool = False) -> Any:
    """The body's JSON document: TooLarge beyond `JSON_BODY_LIMIT`, InvalidRequest(`invalid`) if
    it is not JSON (or too deep, or holds integers beyond 64 bits). An `optional` body may be
    empty or blank: then None."""
    raw = await read_body(request, JSON_BODY_LIMIT)
    if optional and not raw.strip():
        return None
    try:
        return loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(invalid) from None


async def json_object(request: Request, invalid: str, not_object: str,
                      optional: bool = False) -> dict[str, Any]:
    """The body's JSON object, as `json_body` reads it (an absent `optional` one is `{}`);
    InvalidRequest(`not_object`) if it is another JSON value."""
    doc = await json_body(request, invalid, optional)
    if doc is None and optional:
        return {}
    if not isinstance(doc, dict):
        raise InvalidRequest(not_object)
    return doc


def base_url(connection: HTTPConnection) -> str:
    """The base of links handed out: `--public-url` if set, else how the client reached us (the
    scheme a trusted proxy forwarded, and the Host header), without a trailing slash."""
    return services(connection).settings.base_url(str(connection.base_url))
