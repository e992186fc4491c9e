"""The Redis bus: events reach every devicecloud process through one Redis pub/sub channel.

Handlers in this process are called at once (as with the in-process bus); the event is also sent
to Redis, in order, by one background task. A lost Redis connection is retried with back-off and
reported in `/healthz`; meanwhile this process keeps working, and only pushes to devices
connected to other processes are missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from devicecloud.bus import codec
from devicecloud.bus.memory import MemoryBus
from devicecloud.core.events import Event

log = logging.getLogger(__name__)

CHANNEL = "devicecloud:events"
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
QUEUE_LIMIT = 100_000


class RedisBus:
    """A `Bus` across processes."""

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        self.url = url
        self.channel = channel
        self.instance = uuid.uuid4().hex.encode()
        self.connected = False
        self.dropped = 0
        self._local = MemoryBus()  # every event, wherever published
        self._own = MemoryBus()  # events published by this process
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()

    async def start(self, wait: float = 5.0) -> None:
        """Connect in the background; wait up to `wait` s for the subscription to be in place."""
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
        try:
            await asyncio.wait_for(self._subscribed.wait(), wait)
        except TimeoutError:
            log.error("event bus: Redis not reachable yet; retrying in the background")

    async def close(self) -> None:
        """Send what is queued (briefly), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), 2.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drained(self) -> None:
        while not self._queue.empty() and self.connected:
            await asyncio.sleep(0.01)

    def publish(self, event: Event) -> None:
        self._local.publish(event)
        self._own.publish(event)
        try:
            self._queue.put_nowait(self.instance + b"|" + codec.encode(event))
        except asyncio.QueueFull:
            self.dropped += 1

    def subscribe(self, handler: Callable[[Event], None],
                  own_only: bool = False) -> Callable[[], None]:
        return (self._own if own_only else self._local).subscribe(handler)

    def health(self) -> dict[str, object]:
        return {"kind": "redis", "connected": self.connected, "queued": self._queue.qsize(),
                "dropped": self.dropped}

    async def _send(self) -> None:
        failures = 0
        while True:
            client = Redis.from_url(self.url)
            try:
                while True:
                    message = await self._queue.get()
                    try:
                        await client.publish(self.channel, message)
                    except BaseException:
                        self._requeue(message)
                        raise
                    failures = 0
            except (RedisError, OSError) as problem:
                failures = await self._lost("publishing", problem, failures)
            finally:
                await client.aclose()

    def _requeue(self, message: bytes) -> None:
        """Put an unsent message back at the head of the queue."""
        items = [message]
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        for item in items:
            self._queue.put_nowait(item)

    async def _receive(self) -> None:
        failures = 0
        while True:
            client = Redis.from_url(self.url)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                if failures:
                    log.warning("event bus: connected to Redis again")
                self.connected = True
                self._subscribed.set()
                failures = 0
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._deliver(message["data"])
            except (RedisError, OSError) as problem:
                self.connected = False
                failures = await self._lost("listening", problem, failures)
            finally:
                self.connected = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()

    def _deliver(self, data: bytes) -> None:
        sender, _, payload = data.partition(b"|")
        if sender == self.instance:
            return
        try:
            event = codec.decode(payload)
        except (ValueError, TypeError, KeyError):
            log.exception("event bus: undecodable event")
            return
        if event is not None:
            self._local.publish(event)

    @staticmethod
    async def _lost(what: str, problem: Exception, failures: int) -> int:
        delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
        log.warning("event bus: Redis lost while %s (%s); retrying in %s s", what, problem, delay)
        await asyncio.sleep(delay)
        return failures + 1
