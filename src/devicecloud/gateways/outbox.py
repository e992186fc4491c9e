"""What a live device connection is sent, and when.

- Answers go out in the order the requests came in.
- Between a request and its answer the connection is sent nothing else; pushes wait.
- Pushes queued while waiting are coalesced per key (per field): the latest state wins.
- While the transport cannot take more (the peer reads slowly), pushes are held, still coalesced;
  answers still go out: the transport stops reading requests meanwhile, which bounds them.
- With pacing (WebSocket), after a push no further push is sent until the device has made a
  request and been answered, or `pace_seconds` have passed: Tab5 answers every push by re-reading
  its data list and takes the next frame as that list.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

Payload = bytes | str
_NO_SLOTS: deque[Slot] = deque(maxlen=0)  # shared stand-ins, replaced before anything is added
_NO_PUSHES: dict[str, Payload] = {}


class Slot:
    """A place in the answer order, filled when the answer is ready; `before` runs just before
    the answer is written (MQTT sends its PUBACK there, once the change is committed)."""

    __slots__ = ("before", "data", "releases_pacing")

    def __init__(self, releases_pacing: bool, before: Callable[[], None] | None) -> None:
        self.data: Payload | None = None
        self.releases_pacing = releases_pacing
        self.before = before


class Outbox:
    """Orders one connection's outgoing messages; `write` must not block. The queues are made
    on first use: an idle connection (most of them) keeps none."""

    __slots__ = ("_held", "_pace_seconds", "_paced", "_pushes", "_slots", "_timer", "_write",
                 "closed")

    def __init__(self, write: Callable[[Payload], None], pace_seconds: float | None) -> None:
        self._write = write
        self._pace_seconds = pace_seconds
        self._slots: deque[Slot] = _NO_SLOTS
        self._pushes: dict[str, Payload] = _NO_PUSHES
        self._paced = False
        self._held = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def expect(self, releases_pacing: bool = True,
               before: Callable[[], None] | None = None) -> Slot:
        """Reserve the next place in the answer order."""
        slot = Slot(releases_pacing, before)
        if self._slots is _NO_SLOTS:
            self._slots = deque()
        self._slots.append(slot)
        return slot

    def answer(self, slot: Slot, data: Payload) -> None:
        slot.data = data
        self._flush()

    def push(self, key: str, data: Payload) -> None:
        """Queue a push; an older push with the same key not yet sent is replaced."""
        if self._pushes is _NO_PUSHES:
            self._pushes = {}
        self._pushes.pop(key, None)
        self._pushes[key] = data
        self._flush()

    def hold(self) -> None:
        """The transport is full: send no push until `release`."""
        self._held = True

    def release(self) -> None:
        """The transport takes writes again: send what was held."""
        self._held = False
        self._flush()

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self) -> None:
        slots = self._slots
        while not self.closed:
            while slots and slots[0].data is not None:
                slot = slots.popleft()
                assert slot.data is not None
                if slot.before is not None:
                    slot.before()
                self._write(slot.data)
                if slot.releases_pacing and self._paced:
                    self._release()
            if slots or not self._pushes or self._paced or self._held:
                return
            key = next(iter(self._pushes))
            self._write(self._pushes.pop(key))
            if self._pace_seconds is not None:
                self._paced = True
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._pace_seconds, self._timeout)
                return

    def _release(self) -> None:
        self._paced = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timeout(self) -> None:
        self._timer = None
        self._paced = False
        self._flush()
