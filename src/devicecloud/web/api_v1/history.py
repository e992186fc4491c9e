"""/api/v1/devices/{id}/fields/{name}/history: a field's values over a time range, raw or in
buckets, as JSON pages or streamed whole as CSV or NDJSON; and backfills (JSON or CSV), imported
all or nothing and never pushed."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from devicecloud.core.errors import InvalidRequest
from devicecloud.core.history import BadPoint, Bucket, History, Range, RawRow, bucket_of, range_of
from devicecloud.core.models import Field
from devicecloud.web.api_v1.auth import account_of
from devicecloud.web.api_v1.devices import field_doc, owned_profile
from devicecloud.web.api_v1.paging import cursor_of, limit_of, page_of
from devicecloud.web.api_v1.problems import WrongShape, answers
from devicecloud.web.responses import json_response
from devicecloud.web.services import services
from devicecloud.web.uploads import read_body

log = logging.getLogger(__name__)

BACKFILL_BODY_LIMIT = 16 * 1024 * 1024
"""The largest backfill body: 100,000 points of short values fit well within it."""
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8",
           "ndjson": "application/x-ndjson"}
RAW_HEADER = ("t", "value")
BUCKET_HEADER = ("t", "min", "max", "mean", "count", "last")
NOT_A_LIST = 'body: a JSON list of points {"t": <epoch ms>, "value": <value>}'


def _history(request: Request) -> History:
    cloud = services(request).cloud
    return History(cloud, cloud.store)


def _format_of(raw: str | None) -> str:
    shown = raw or "json"
    if shown not in FORMATS:
        raise InvalidRequest(f"format: {shown[:20]!r} is none of {', '.join(FORMATS)}")
    return shown


def _raw_doc(row: RawRow) -> dict[str, Any]:
    return {"t": row[0], "value": orjson.loads(row[2])}


def _bucket_doc(bucket: Bucket) -> dict[str, Any]:
    return dict(zip(BUCKET_HEADER, bucket, strict=True))


def _csv_value(encoded: str) -> str:
    """A value in CSV: a string as itself, anything else as its JSON."""
    if encoded.startswith('"'):
        text: str = orjson.loads(encoded)
        return text
    return encoded


def _csv(rows: list[tuple[Any, ...]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _raw_chunk(page: list[RawRow], form: str) -> bytes:
    if form == "csv":
        return _csv([(t, _csv_value(value)) for t, _, value in page])
    return b"".join(b'{"t":%d,"value":%s}\n' % (t, value.encode()) for t, _, value in page)


def _bucket_chunk(page: list[Bucket], form: str) -> bytes:
    if form == "csv":
        return _csv(list(page))
    return b"".join(orjson.dumps(_bucket_doc(bucket)) + b"\n" for bucket in page)


async def _stream(history: History, field: Field, span: Range, size: int | None,
                  form: str) -> AsyncIterator[bytes]:
    """The whole range, a page at a time (CSV after its header)."""
    if form == "csv":
        yield _csv([BUCKET_HEADER if size else RAW_HEADER])
    try:
        if size is None:
            async for rows in history.stream_rows(field, span):
                yield _raw_chunk(rows, form)
        else:
            async for buckets in history.stream_buckets(field, span, size):
                yield _bucket_chunk(buckets, form)
    except Exception:  # the status is sent: the client sees a cut-short body
        log.exception("history stream of field %s failed", field.id)
        raise


@answers
async def get_history(request: Request) -> Response:
    """The field's values in the range: raw or bucketed, paged JSON or streamed CSV/NDJSON."""
    account = await account_of(request)
    params = request.query_params
    span = range_of(params.get("from"), params.get("to"))
    size, form = bucket_of(params.get("aggregate")), _format_of(params.get("format"))
    limit = limit_of(params)
    after = cursor_of(params, (int,) if size else (int, int))
    profile = await owned_profile(request, account)
    field = await services(request).cloud.get_field(profile.device, request.path_params["name"])
    if size is not None and field.data_type != "number":
        raise WrongShape(f"aggregate: buckets need numbers, and {field.name!r} holds "
                         f"{field.data_type} values (ask for aggregate=raw)")
    history = _history(request)
    if form != "json":
        return StreamingResponse(_stream(history, field, span, size, form),
                                 media_type=FORMATS[form])
    if size is None:
        rows = await history.rows(field, span, (int(after[0]), int(after[1])) if after else
                                  (-1, 0), limit + 1)
        last = rows[limit - 1][:2] if len(rows) > limit else None
        return json_response(page_of([_raw_doc(row) for row in rows[:limit]], last))
    if after:
        span = Range(max(span.start, int(after[0]) + size), span.end)
    buckets = await history.buckets(field, span, size, limit + 1)
    more = (buckets[limit - 1][0],) if len(buckets) > limit else None
    return json_response(page_of([_bucket_doc(bucket) for bucket in buckets[:limit]], more))


def _json_points(raw: bytes) -> list[tuple[Any, Any]]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("body: not valid JSON") from None
    if not isinstance(doc, list):
        raise WrongShape(NOT_A_LIST)
    points = []
    for index, point in enumerate(doc):
        if not isinstance(point, dict) or set(point) != {"t", "value"}:
            raise WrongShape(f'items.{index}: a point is an object {{"t", "value"}}, '
                             f"not {orjson.dumps(point)[:40].decode(errors='replace')}")
        points.append((point["t"], point["value"]))
    return points


def _csv_cell(text: str) -> Any:
    """A CSV value: JSON if it reads as JSON (numbers, true, ...), else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _csv_points(raw: bytes) -> list[tuple[Any, Any]]:
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise InvalidRequest("body: CSV is not UTF-8") from None
    points: list[tuple[Any, Any]] = []
    for index, row in enumerate(csv.reader(lines)):
        if index == 0 and [cell.strip().lower() for cell in row] == list(RAW_HEADER):
            continue
        if not row:
            continue
        if len(row) != 2:
            raise WrongShape(f"items.{len(points)}: a CSV row is t,value: line {index + 1} has "
                             f"{len(row)} cells")
        points.append((row[0], _csv_cell(row[1])))
    return points


@answers
async def post_history(request: Request) -> Response:
    """A backfill: `[{"t", "value"}]` or CSV `t,value`, all or nothing, never pushed."""
    account = await account_of(request)
    profile = await owned_profile(request, account)
    raw = await read_body(request, BACKFILL_BODY_LIMIT)
    is_csv = request.headers.get("content-type", "").split(";")[0].strip() == "text/csv"
    points = _csv_points(raw) if is_csv else _json_points(raw)
    try:
        field, changed = await _history(request).backfill(
            profile.device, request.path_params["name"], points)
    except BadPoint as problem:
        raise WrongShape(str(problem)) from None
    return json_response({"imported": len(points), "value_changed": changed,
                          "field": field_doc(field)})
