"""devicecloud's own API under `/api/v1/` (docs/api.md): Bearer `open_api_key` auth,
problem+json errors, cursor paging, devices named by their public id, and their fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from devicecloud.web.api_v1 import devices, fields, history
from devicecloud.web.api_v1 import schemas as s
from devicecloud.web.errors import PROBLEM_JSON
from devicecloud.web.openapi import NO_CONTENT, Operation

PREFIX = "/api/v1/"
DEVICES = "/api/v1/devices"
DEVICE = DEVICES + "/{id}"
FIELD = DEVICE + "/fields/{name}"
HISTORY = FIELD + "/history"
_TAG = "devicecloud API: devices and fields"
_KEY = "bearer"
_BAD = ((400, s.Problem), (401, s.Problem), (429, s.Problem))
_ONE = (*_BAD, (404, s.Problem))
_SHAPE = (*_ONE, (422, s.Problem))


def routes() -> list[BaseRoute]:
    return [
        Route(DEVICES, devices.list_devices, methods=["GET"]),
        Route(DEVICES, devices.bind_device, methods=["POST"]),
        Route(DEVICE, devices.get_device, methods=["GET"]),
        Route(DEVICE, devices.patch_device, methods=["PATCH"]),
        Route(DEVICE, devices.release_device, methods=["DELETE"]),
        Route(DEVICE + "/fields", fields.list_fields, methods=["GET"]),
        Route(FIELD, fields.put_field, methods=["PUT"]),
        Route(FIELD, fields.delete_field, methods=["DELETE"]),
        Route(HISTORY, history.get_history, methods=["GET"]),
        Route(HISTORY, history.post_history, methods=["POST"]),
    ]


def _op(method: str, path: str, summary: str, responses: tuple[type[BaseModel], ...],
        **options: Any) -> Operation:
    return Operation(method, path, summary, _TAG, responses, security=_KEY,
                     error_media_type=PROBLEM_JSON, **options)


OPERATIONS: tuple[Operation, ...] = (
    _op("GET", DEVICES, "List the account's devices", (s.DevicePage,),
              query=s.DevicesQuery, errors=_BAD,
              description="Oldest first; `q` matches a substring of the name (any case) or of "
                          "the MAC, `tag` one tag exactly, `online` the presence now."),
    _op("POST", DEVICES, "Bind a device to the account", (s.DeviceOut,),
              body=s.BindRequest, errors=(*_SHAPE, (409, s.Problem)),
              description="By its token or the pairing code it shows, as the console binds: "
                          "the device gets push 106. Wrong pairing codes are counted as the "
                          "console counts them (429 beyond)."),
    _op("GET", DEVICE, "One device, with its fields", (s.DeviceDetail,),
              path_params=("id",), errors=_ONE),
    _op("PATCH", DEVICE, "Rename, describe or tag a device", (s.DeviceOut,),
              body=s.DevicePatch, path_params=("id",), errors=_SHAPE),
    _op("DELETE", DEVICE, "Release the device from the account", (),
              path_params=("id",), errors=_ONE, response_media_type=NO_CONTENT,
              description="As the console's release (push 106 semantics, the ESP-AI binding "
                          "ends); its data stays with the device. Answers 204."),
    _op("GET", DEVICE + "/fields", "The device's fields", (s.FieldList,),
              query=s.PageQuery, path_params=("id",), errors=_ONE),
    _op("PUT", FIELD, "Set a field", (s.FieldOut,), body=s.FieldPut,
              path_params=("id", "name"), errors=(*_SHAPE, (409, s.Problem),
                                                                  (413, s.Problem)),
              description="A user edit, made if new: the device gets push 109 (new) or 107 "
                          "(changed). `name` is URL-encoded."),
    _op("DELETE", FIELD, "Delete a field", (), path_params=("id", "name"),
              errors=_ONE, response_media_type=NO_CONTENT,
              description="A user edit: the device gets push 108. Answers 204."),
    _op("GET", HISTORY, "A field's history over a time range", (s.HistoryPage,),
              query=s.HistoryQuery, path_params=("id", "name"), errors=_SHAPE,
              description="`from` (included) to `to` (excluded), epoch ms or RFC 3339. Raw "
                          "rows `{t, value}` or `1m`/`1h`/`1d` buckets of a numeric field "
                          "`{t, min, max, mean, count, last}` (422 for another field). "
                          "`format=json` is paged; `csv` and `ndjson` stream the whole range "
                          "in time order in one answer (`text/csv`, `application/x-ndjson`)."),
    _op("POST", HISTORY, "Import (backfill) points into a field's history", (s.BackfillOut,),
              body=s.BackfillPoints, path_params=("id", "name"),
              errors=(*_SHAPE, (409, s.Problem), (413, s.Problem)),
              description="Up to 100,000 points `[{t, value}]` of any age, or a `text/csv` "
                          "body `t,value`: all imported or none (422 names the first bad "
                          "point, `items.<index>.t`). Never pushed to the device; the newest "
                          "point becomes the current value only if newer than it. A field "
                          "not there yet is made."),
)
