"""`GET /api/v1/events`: the account's event log as Server-Sent Events.

Each event is `id: <id>`, `event: <type>` and `data: {"id", "type", "created", "data"}`. A
client resuming with `Last-Event-ID` (or `?after=`) gets every event after that id from the log,
then the live ones; without it, the stream starts with the events committed from now on. The
stream reads the log when something about one of the account's devices happens in this process
(or comes here through the bus), and at the latest every `POLL_SECONDS`; a comment every
`HEARTBEAT_SECONDS` keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable

import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from devicecloud.core.errors import DeviceCloudError, InvalidRequest
from devicecloud.core.events import (
    EVENT_TYPES,
    DeviceBound,
    Event,
    LoggedEvent,
    PresenceChanged,
)
from devicecloud.core.models import Account
from devicecloud.web.api_v1.auth import account_of
from devicecloud.web.api_v1.problems import answers
from devicecloud.web.api_v1.schemas import DEVICE_ID, Problem
from devicecloud.web.errors import PROBLEM_JSON
from devicecloud.web.openapi import Operation
from devicecloud.web.services import Services, services

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 1.0  # the longest a stream goes without reading the log
PAGE = 500  # events read per query
MAX_WATCHED = 1_000  # devices whose events (from other processes too) wake a stream; the
# events of an account's further devices come with the next poll
_PUBLIC_ID = re.compile(r"[0-9a-f]{32}")
_MAX_ID = 2 ** 63 - 1


def _types(raw: str) -> tuple[str, ...]:
    types = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(f"types: unknown event type {unknown[0]!r}; the types are "
                             f"{', '.join(EVENT_TYPES)}")
    return types


def _device(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not _PUBLIC_ID.fullmatch(raw):
        raise InvalidRequest("device must be a device's id (32 lowercase hex digits)")
    return raw


def _after(request: Request) -> int | None:
    """The id to resume after: the `Last-Event-ID` header, else `?after=`; None for neither."""
    for name, raw in (("Last-Event-ID", request.headers.get("last-event-id")),
                      ("after", request.query_params.get("after"))):
        if raw is not None and raw.strip():
            if not raw.strip().isdigit() or int(raw) > _MAX_ID:
                raise InvalidRequest(f"{name} must be an event id (a whole number)")
            return int(raw)
    return None


def frame(event: LoggedEvent) -> bytes:
    """One event as Server-Sent Events lines."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(),
                                                 orjson.dumps(event.as_json()))


class _Wake:
    """What makes a stream read the log again: events about the account's devices here."""

    def __init__(self, running: Services, account: Account, tokens: list[str]) -> None:
        self.bus = running.bus
        self.account = account
        self.tokens = set(tokens[:MAX_WATCHED])
        self.now = asyncio.Event()
        for token in self.tokens:
            self.bus.want(token)
        self._undo: list[Callable[[], None]] = [self.bus.subscribe(self._on_event),
                                                running.cloud.events.listen(self._on_logged)]

    def _on_event(self, event: Event) -> None:
        token = event.device_token
        if isinstance(event, DeviceBound) and event.account_id == self.account.id and \
                token not in self.tokens and len(self.tokens) < MAX_WATCHED:
            self.tokens.add(token)
            self.bus.want(token)
        if token in self.tokens and not isinstance(event, PresenceChanged):
            self.now.set()  # announced after its commit (a presence row follows `_on_logged`)

    def _on_logged(self, token: str) -> None:
        if token in self.tokens:
            self.now.set()

    def close(self) -> None:
        for undo in self._undo:
            undo()
        for token in self.tokens:
            self.bus.unwant(token)


async def _stream(running: Services, account: Account, after: int, types: tuple[str, ...],
                  device: str | None, tokens: list[str]) -> AsyncIterator[bytes]:
    store = running.cloud.store
    stopping = running.cloud.events.stopping
    loop = asyncio.get_running_loop()
    wake = _Wake(running, account, tokens)
    try:
        yield b"retry: 2000\n\n"
        last, beat = after, loop.time() + HEARTBEAT_SECONDS
        while not stopping.is_set():
            wake.now.clear()
            try:
                batch = await store.events_after(account.id, last, types, device, PAGE)
            except DeviceCloudError as problem:  # the client resumes from `last` once back
                log.warning("event stream ended: %s", problem)
                return
            for event in batch:
                yield frame(event)
                last = event.id
            if len(batch) == PAGE:
                continue
            if loop.time() >= beat:
                yield b": heartbeat\n\n"
                beat = loop.time() + HEARTBEAT_SECONDS
            timeout = min(POLL_SECONDS, max(0.0, beat - loop.time()))
            waits = [asyncio.ensure_future(wake.now.wait()),
                     asyncio.ensure_future(stopping.wait())]
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
    finally:
        wake.close()


@answers
async def events(request: Request) -> Response:
    """The account's events as Server-Sent Events, resuming after `Last-Event-ID`."""
    account = await account_of(request)
    types = _types(request.query_params.get("types", ""))
    device = _device(request.query_params.get("device"))
    after = _after(request)
    running = services(request)
    if after is None:
        after = await running.cloud.store.last_event_id()
    tokens = [d.token for d in await running.cloud.devices_of(account)]
    return StreamingResponse(_stream(running, account, after, types, device, tokens),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


EVENTS = "/api/v1/events"


def routes() -> list[Route]:
    return [Route(EVENTS, events, methods=["GET"])]


class EventsQuery(BaseModel):
    types: str | None = Field(None, description="comma-separated event types: "
                                                + ", ".join(EVENT_TYPES))
    device: str | None = Field(None, description="only this device's events (its id)",
                               examples=[DEVICE_ID])
    after: int | None = Field(None, ge=0, description="resume after this event id, as the "
                                                      "`Last-Event-ID` header does (0: the "
                                                      "whole log)")


class EventOut(BaseModel):
    """One event: the `data:` line of each Server-Sent Event."""

    id: str = Field(examples=["1042"])
    type: str = Field(examples=["field.changed"])
    created: int = Field(examples=[1764612000000])
    data: dict[str, object] = Field(examples=[{"device": DEVICE_ID, "name": "temp",
                                               "value": 21.5, "source": "device"}])


OPERATIONS = (Operation(
    "GET", EVENTS, "The account's events, as Server-Sent Events", "devicecloud API: events",
    (EventOut,), query=EventsQuery, security="bearer", response_media_type="text/event-stream",
    errors=((400, Problem), (401, Problem), (429, Problem)), error_media_type=PROBLEM_JSON,
    description="`text/event-stream`: each event is `id: <id>`, `event: <type>` and `data: "
                "<the event as JSON>` (`EventOut`), in commit order. With `Last-Event-ID` (or "
                "`after`) the stream first gives every event after that id still in the log "
                "(kept 7 days), then the live ones; without, the events from now on. A comment "
                "line every 15 s keeps the connection open."),)

