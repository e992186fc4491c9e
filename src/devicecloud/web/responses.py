"""Compact JSON responses in the EzData envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


def json_response(doc: Any, status_code: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status_code, headers=headers,
                    media_type="application/json")


def ez_ok(data: Any = None) -> Response:
    """`{"code":200,"msg":"OK","data":...}`."""
    return json_response({"code": 200, "msg": "OK", "data": data})


def ez_error(message: str, status_code: int = 200,
             headers: Mapping[str, str] | None = None) -> Response:
    """`{"code":500,"msg":...,"data":null}`: HTTP 200 for protocol errors, 4xx for non-EzData."""
    return json_response({"code": 500, "msg": message, "data": None}, status_code, headers)
