"""Compact JSON responses (EzData's envelope among them) and file downloads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import FileResponse, Response

from devicecloud.core.ports import Blobs

# Files from devices must never run as a page of this site: sandboxed, never sniffed.
UNTRUSTED_FILE_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def json_response(doc: Any, status_code: int = 200, headers: Mapping[str, str] | None = None,
                  media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(doc), status_code=status_code, headers=headers,
                    media_type=media_type)


def ez_ok(data: Any = None) -> Response:
    """`{"code":200,"msg":"OK","data":...}`."""
    return json_response({"code": 200, "msg": "OK", "data": data})


def ez_error(message: str, status_code: int = 200,
             headers: Mapping[str, str] | None = None) -> Response:
    """`{"code":500,"msg":...,"data":null}`: HTTP 200 for protocol errors, 4xx for non-EzData."""
    return json_response({"code": 500, "msg": message, "data": None}, status_code, headers)


def file_download(blobs: Blobs, blob_id: str, file_name: str, asked_name: str, media_type: str,
             untrusted: bool = False) -> FileResponse | None:
    """The blob `blob_id` as a file response, when it is on this machine's disk and was asked for
    by its own `file_name`; else None.

    An `untrusted` file (one a device sent) is sandboxed; images stay inline (the console
    previews them), anything else comes with `Content-Disposition: attachment`.
    """
    path = blobs.local_path(blob_id)
    if path is None or asked_name != file_name:
        return None
    headers: dict[str, str] = {}
    if untrusted:
        headers.update(UNTRUSTED_FILE_HEADERS)
        if not media_type.startswith("image/") or media_type == "image/svg+xml":
            headers["Content-Disposition"] = "attachment"
    return FileResponse(path, media_type=media_type, headers=headers)
