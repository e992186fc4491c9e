"""The Redis bus: events cross devicecloud processes through Redis pub/sub, and only where wanted.

Handlers in this process are called at once, as with the in-process bus. Another process gets an
event only if it `want`s the event's device (it holds a live connection or a page watching it):
each process announces what it wants on a control channel, every process mirrors the others'
wants, and an event goes to the inbox channel of each process that wants its device. Events of
one loop iteration leave in one pipelined round trip, one message per receiving process.

Nothing is lost silently. What cannot be sent (Redis unreachable or frozen, or more than
`PENDING_LIMIT` events waiting) is dropped, counted in `/healthz`, and announced as a gap once
Redis answers again; a receiver that missed messages (its subscription was lost, a gap was
announced, or an event arrived more than `STALE_AFTER_MS` late) calls `on_gap(since)`, and the
application sends its devices the current values instead (see `gateways/resync.py`). So an event
is never delivered late enough to overwrite newer state, and never twice.

After a reconnection a process says hello with everything it wants, and the others answer with
theirs, so the mirrors are whole again even if Redis restarted empty. A process whose inbox nobody
has listened to for `FORGET_AFTER_MS` is taken for gone; if it comes back, the answer to its hello
tells it since when it missed events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from devicecloud.bus import codec
from devicecloud.bus.memory import MemoryBus
from devicecloud.core.events import Event
from devicecloud.core.ids import PROCESS_ID, now_ms

log = logging.getLogger(__name__)

PREFIX = "devicecloud:bus:"
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
PENDING_LIMIT = 100_000  # events waiting to be sent; beyond, they are dropped as a gap
STALE_AFTER_MS = 2_000  # an event this late is not delivered: the receiver resynchronises
FORGET_AFTER_MS = 10_000  # a process nobody hears for this long is taken for gone
TIMEOUT = 2.0  # seconds a Redis command may take before Redis counts as unreachable
PING_EVERY = 1.0

Gap = Callable[[int, int | None], None]  # (since, until or None for now)


class RedisBus:
    """A `Bus` across processes."""

    def __init__(self, url: str, instance: str = PROCESS_ID, prefix: str = PREFIX) -> None:
        self.url = url
        self.instance = instance
        self.prefix = prefix
        self.connected = False
        self.round_trip_ms: float | None = None
        self.dropped = 0  # events that could not be sent, in all
        self.gaps = 0  # times this process found it had missed events
        self.on_gap: Gap | None = None
        self._local = MemoryBus()  # every event, wherever published
        self._own = MemoryBus()  # events published by this process
        self._wanted: dict[str, int] = {}
        self._remote: dict[str, set[str]] = {}  # device token -> processes wanting it
        self._wants_of: dict[str, set[str]] = {}  # process -> tokens it wants
        self._absent: dict[str, int] = {}  # process -> since when nobody listens at its inbox
        self._outbox: dict[str, list[dict[str, Any]]] = {}  # process -> events for it
        self._pending = 0
        self._first_at = 0  # when the oldest event waiting to be sent was published
        self._control: list[dict[str, Any]] = []
        self._dropped_since: int | None = None
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client = Redis.from_url(url, socket_timeout=TIMEOUT,
                                      socket_connect_timeout=TIMEOUT)

    @property
    def _inbox(self) -> str:
        return f"{self.prefix}in:{self.instance}"

    @property
    def _broadcast(self) -> str:
        return f"{self.prefix}control"

    async def start(self, wait: float = 5.0) -> None:
        """Connect in the background; wait up to `wait` s for the subscription to be in place."""
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive()),
                       asyncio.create_task(self._ping())]
        try:
            await asyncio.wait_for(self._subscribed.wait(), wait)
        except TimeoutError:
            log.error("event bus: Redis not reachable yet; retrying in the background")

    async def close(self) -> None:
        """Send what is queued and say goodbye (briefly), then stop; never waits long."""
        self._control.append({"bye": True})
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), 1.0)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._client.aclose(), 1.0)

    async def _drained(self) -> None:
        while (self._pending or self._control) and self.connected:
            await asyncio.sleep(0.01)

    # the Bus port ---------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        self._local.publish(event)
        self._own.publish(event)
        targets = self._remote.get(event.device_token)
        if not targets:
            return  # no other process wants it: the usual case, nothing crosses
        doc = codec.to_doc(event)
        for target in targets:
            self._outbox.setdefault(target, []).append(doc)
        if not self._pending:
            self._first_at = now_ms()
        self._pending += 1
        if self._pending > PENDING_LIMIT:
            self._drop_pending()
        self._wake.set()

    def subscribe(self, handler: Callable[[Event], None],
                  own_only: bool = False) -> Callable[[], None]:
        return (self._own if own_only else self._local).subscribe(handler)

    def want(self, token: str) -> None:
        count = self._wanted.get(token, 0)
        self._wanted[token] = count + 1
        if not count:
            self._announce({"want": [token]})

    def unwant(self, token: str) -> None:
        count = self._wanted.get(token, 0)
        if count > 1:
            self._wanted[token] = count - 1
        elif count:
            del self._wanted[token]
            self._announce({"unwant": [token]})

    def health(self) -> dict[str, object]:
        return {"kind": "redis", "connected": self.connected,
                "round_trip_ms": self.round_trip_ms, "pending": self._pending,
                "dropped": self.dropped, "gaps": self.gaps}

    # sending --------------------------------------------------------------------------------

    def _announce(self, message: dict[str, Any]) -> None:
        self._control.append(message)
        self._wake.set()

    def _drop_pending(self) -> None:
        """Give up on everything waiting; receivers are told of the gap once Redis answers."""
        if self._pending:
            self.dropped += self._pending
            if self._dropped_since is None:
                log.error("event bus: events for other processes cannot be sent; counting them "
                          "until Redis answers, then the receivers resynchronise")
                self._dropped_since = self._first_at
        self._outbox, self._pending = {}, 0

    async def _send(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            outbox, self._outbox, count, self._pending = self._outbox, {}, self._pending, 0
            at = self._first_at
            control, self._control = self._control, []
            if self._dropped_since is not None:
                control.append({"gap": self._dropped_since})
            try:
                if not self.connected:
                    raise ConnectionError("not subscribed")
                await self._flush(outbox, control, at)
                if self._dropped_since is not None:
                    log.warning("event bus: Redis answers again; receivers resynchronise")
                    self._dropped_since = None
                failures = 0
            except (RedisError, OSError, ConnectionError, TimeoutError) as problem:
                self._pending += count
                self._first_at = min(at, self._first_at) if self._pending > count else at
                self._drop_pending()
                self._control = [m for m in control if "gap" not in m] + self._control
                if self.connected:
                    failures = await _retry("publishing", problem, failures)
                else:  # the receiver reconnects; go on as soon as it has
                    await self._subscribed.wait()
                    failures = 0
                self._wake.set()

    async def _flush(self, outbox: dict[str, list[dict[str, Any]]],
                     control: list[dict[str, Any]], at: int) -> None:
        targets = list(outbox)
        async with self._client.pipeline(transaction=False) as pipe:
            for target in targets:
                pipe.publish(f"{self.prefix}in:{target}", orjson.dumps(
                    {"from": self.instance, "at": at, "events": outbox[target]}))
            for message in control:
                pipe.publish(self._broadcast, orjson.dumps({"from": self.instance, **message}))
            counts = await asyncio.wait_for(pipe.execute(), TIMEOUT)
        now = now_ms()
        for target, received in zip(targets, counts, strict=False):
            if received:
                self._absent.pop(target, None)
            elif now - self._absent.setdefault(target, now) > FORGET_AFTER_MS:
                self._forget(target)  # nobody has listened there for a while: it is gone

    # receiving ------------------------------------------------------------------------------

    async def _receive(self) -> None:
        failures = 0
        lost_at: int | None = None
        while True:
            pubsub: PubSub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._inbox, self._broadcast)
                # The hello below says everything wanted: announcements queued meanwhile are moot
                # (and would otherwise pile up for as long as Redis was away).
                self._control = [m for m in self._control if "want" not in m and
                                 "unwant" not in m]
                since = now_ms()
                await asyncio.wait_for(self._client.publish(self._broadcast, orjson.dumps(
                    {"from": self.instance, "hello": True, "want": list(self._wanted),
                     "rejoin": lost_at is not None, "at": since})), TIMEOUT)
                self.connected = True
                self._subscribed.set()
                if lost_at is not None:
                    log.warning("event bus: connected to Redis again")
                    self._gap(lost_at, since)
                    lost_at = None
                failures = 0
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=PING_EVERY)
                    if message is not None and message.get("type") == "message":
                        self._deliver(message["channel"], message["data"])
            except (RedisError, OSError, TimeoutError) as problem:
                if self.connected:
                    lost_at = now_ms()
                self.connected = False
                self._subscribed.clear()
                failures = await _retry("listening", problem, failures)
            finally:
                self.connected = False
                self._subscribed.clear()
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]

    def _deliver(self, channel: bytes, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            sender = message["from"]
            if sender == self.instance:
                return
            if channel == self._broadcast.encode():
                self._control_message(sender, message)
                return
            if "want" in message:  # the answer to our hello
                self._wants(sender, message["want"])
                if "gap" in message:
                    self._gap(message["gap"])
                return
            if now_ms() - message["at"] > STALE_AFTER_MS:
                self._gap(message["at"])
                return
            events = [codec.from_doc(doc) for doc in message["events"]]
        except (ValueError, TypeError, KeyError):
            log.exception("event bus: undecodable message")
            return
        for event in events:
            if event is not None:
                self._local.publish(event)

    def _control_message(self, sender: str, message: dict[str, Any]) -> None:
        if message.get("bye"):
            self._forget(sender)
            return
        if message.get("hello"):
            # A process back after we had given up on it missed our events since it came back.
            missed = message.get("at") if message.get("rejoin") and (
                sender not in self._wants_of) else None
            self._forget(sender)
            self._reply_wants(sender, missed)
        if "want" in message:
            self._wants(sender, message["want"])
        for token in message.get("unwant", ()):
            self._remote.get(token, set()).discard(sender)
            self._wants_of.get(sender, set()).discard(token)
        if "gap" in message and self._wanted:
            self._gap(message["gap"])

    def _reply_wants(self, sender: str, missed: int | None) -> None:
        """Tell a process that said hello everything this one wants (and since when it missed
        this one's events, if it did)."""
        answer: dict[str, Any] = {"from": self.instance, "want": list(self._wanted)}
        if missed is not None:
            answer["gap"] = missed
        task = asyncio.ensure_future(self._answer(sender, answer))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _answer(self, sender: str, answer: dict[str, Any]) -> None:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._client.publish(
                f"{self.prefix}in:{sender}", orjson.dumps(answer)), TIMEOUT)

    def _wants(self, sender: str, tokens: list[str]) -> None:
        mine = self._wants_of.setdefault(sender, set())
        for token in tokens:
            self._remote.setdefault(token, set()).add(sender)
            mine.add(token)

    def _forget(self, process: str) -> None:
        self._absent.pop(process, None)
        for token in self._wants_of.pop(process, ()):
            wanting = self._remote.get(token)
            if wanting is not None:
                wanting.discard(process)
                if not wanting:
                    del self._remote[token]

    def _gap(self, since: int, until: int | None = None) -> None:
        """Events from `since` (to `until`, else now) may have been missed here."""
        self.gaps += 1
        if self.on_gap is not None:
            self.on_gap(since, until)

    async def _ping(self) -> None:
        """Measure a round trip every second: a frozen Redis shows in `/healthz`."""
        while True:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(self._client.ping(), TIMEOUT)
                self.round_trip_ms = round((time.perf_counter() - started) * 1000, 2)
            except (RedisError, OSError, TimeoutError):
                self.round_trip_ms = None
            await asyncio.sleep(PING_EVERY)


async def _retry(what: str, problem: Exception, failures: int) -> int:
    delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
    log.warning("event bus: Redis lost while %s (%s); retrying in %s s", what, problem, delay)
    await asyncio.sleep(delay)
    return failures + 1
