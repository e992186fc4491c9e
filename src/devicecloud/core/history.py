"""A field's history over a time range: raw rows or `1m`/`1h`/`1d` buckets of its numeric values
(computed from the raw rows when asked), read in pages or streamed whole; and backfills of
points of any age, written all or nothing, never pushed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devicecloud.core.errors import Conflict, InvalidRequest, NotFound, TooLarge
from devicecloud.core.ids import new_token
from devicecloud.core.models import Device, Field, data_type_of
from devicecloud.core.ports import HistoryStore
from devicecloud.core.service import DeviceCloud, check_name, check_value

BUCKETS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
"""The bucket sizes `aggregate` may name, in milliseconds."""
RAW = "raw"
MAX_POINTS = 100_000
"""The most points one backfill may carry."""
LATEST = 253_402_300_799_999
"""The last millisecond of year 9999: times are from 0 (1970) to this."""
STREAM_PAGE = 5_000
"""Rows read per statement while streaming a range: memory stays that of one page."""
NUMBER = "number"
RawRow = tuple[int, int, str]
Bucket = tuple[int, float, float, float, int, float]
Point = tuple[int, str, str]


class BadPoint(InvalidRequest):
    """A point of a backfill is not a time and a value of the field's type: nothing imported."""


def parse_time(raw: object, what: str) -> int:
    """Epoch ms (an integer, or its digits) or an RFC 3339 time with its offset, as ms from 0 to
    `LATEST`; InvalidRequest naming `what` otherwise."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        ms = raw
    elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit() and raw.strip().isascii():
        ms = int(raw.strip())
    elif isinstance(raw, str):
        ms = _rfc3339(raw.strip(), what)
    else:
        raise InvalidRequest(f"{what}: a time is epoch milliseconds or RFC 3339, not {raw!r:.40}")
    if not 0 <= ms <= LATEST:
        raise InvalidRequest(f"{what}: {ms} is outside 0 to {LATEST} (epoch milliseconds)")
    return ms


def _rfc3339(raw: str, what: str) -> int:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in raw.upper():
        raise InvalidRequest(f"{what}: not epoch milliseconds or an RFC 3339 time with its "
                             f"offset (such as 2026-01-31T12:00:00Z): {raw[:40]!r}")
    return round(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Range:
    """The times `start <= t < end`, in epoch ms."""

    start: int
    end: int


def range_of(start: str | None, end: str | None) -> Range:
    """`from` (default: 1970) to `to` (default: the end of time; excluded); InvalidRequest naming
    them when `from` is after `to`."""
    low = 0 if not start else parse_time(start, "from")
    high = LATEST + 1 if not end else parse_time(end, "to")
    if low > high:
        raise InvalidRequest(f"from: {low} is after to: {high}")
    return Range(low, high)


def bucket_of(aggregate: str | None) -> int | None:
    """The bucket size in ms that `aggregate` names (None: raw rows); InvalidRequest otherwise."""
    if not aggregate or aggregate == RAW:
        return None
    if aggregate not in BUCKETS:
        raise InvalidRequest(f"aggregate: {aggregate[:20]!r} is none of raw, "
                             f"{', '.join(BUCKETS)}")
    return BUCKETS[aggregate]


class History:
    """Reads and backfills of fields' history, for the devices' data the cloud keeps."""

    def __init__(self, cloud: DeviceCloud, store: HistoryStore) -> None:
        self.cloud = cloud
        self.store = store

    async def rows(self, field: Field, span: Range, after: tuple[int, int],
                   limit: int) -> list[RawRow]:
        """Up to `limit` raw rows `(t, id, value JSON)` in time order after the key `after`."""
        return await self.store.history_rows(field.id, span.start, span.end, after, limit)

    async def buckets(self, field: Field, span: Range, size: int, limit: int) -> list[Bucket]:
        """Up to `limit` buckets of `size` ms over the rows in the range, oldest first (the
        first and last count only the rows inside it)."""
        return await self.store.history_buckets(field.id, span.start, span.end, size, limit)

    async def stream_rows(self, field: Field, span: Range) -> AsyncIterator[list[RawRow]]:
        """Every raw row of the range in time order, `STREAM_PAGE` at a time."""
        after = (-1, 0)
        while True:
            page = await self.rows(field, span, after, STREAM_PAGE)
            if page:
                yield page
            if len(page) < STREAM_PAGE:
                return
            after = (page[-1][0], page[-1][1])

    async def stream_buckets(self, field: Field, span: Range,
                             size: int) -> AsyncIterator[list[Bucket]]:
        """Every bucket of the range, oldest first, `STREAM_PAGE` at a time."""
        while True:
            page = await self.buckets(field, span, size, STREAM_PAGE)
            if page:
                yield page
            if len(page) < STREAM_PAGE:
                return
            span = Range(page[-1][0] + size, span.end)

    async def backfill(self, device: Device, name: object,
                       points: Sequence[tuple[Any, Any]]) -> tuple[Field, bool]:
        """Import `(t, value)` points into the field (made if new) in one transaction, never
        pushed: the newest becomes the current value only if newer than it. Whether it did."""
        checked = check_name(name)
        if len(points) > MAX_POINTS:
            raise TooLarge(f"body: {len(points)} points, more than {MAX_POINTS} a call")
        if not points:
            raise BadPoint("items: no points to import")
        try:
            kind: str | None = (await self.cloud.get_field(device, checked)).data_type
        except NotFound:
            kind = None
        rows = checked_points(points, kind)
        most = self.cloud.fields_per_device
        field, changed = await self.store.backfill(device.id, checked, rows,
                                                   (new_token(), new_token()), most)
        if field is None:
            raise Conflict(f"limit reached: device.fields {most} (a device holds at most {most} "
                           "data fields; delete some first)")
        return field, changed


def checked_points(points: Sequence[tuple[Any, Any]], kind: str | None) -> list[Point]:
    """The points as rows `(t, value JSON, data type)`, each a time and a value of `kind` (None:
    the newest point's); BadPoint naming the first that is not, as `items.<index>.<part>`."""
    rows: list[Point] = []
    for index, (raw_t, value) in enumerate(points):
        try:
            t = parse_time(raw_t, f"items.{index}.t")
        except InvalidRequest as problem:
            raise BadPoint(str(problem)) from None
        try:
            encoded = check_value(value).decode()
        except (InvalidRequest, TooLarge) as problem:
            raise BadPoint(f"items.{index}.value: {problem}") from None
        rows.append((t, encoded, data_type_of(value)))
    wanted = kind or max(rows, key=lambda row: row[0])[2]
    for index, row in enumerate(rows):
        if row[2] != wanted:
            raise BadPoint(f"items.{index}.value: a {row[2]} value, but the field holds "
                           f"{wanted} values")
    return rows
