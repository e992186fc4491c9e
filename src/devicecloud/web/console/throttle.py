"""A failure counter per key (an email, an address, an account) over a sliding window."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

_MAX_KEYS = 100_000


class Throttle:
    """Allows at most `limit` recorded attempts per key within `window` seconds."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}

    def wait_seconds(self, *keys: str) -> int:
        """0 if every key may try again now, else how many seconds until all of them may."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            attempts = self._recent(key, now)
            if len(attempts) >= self.limit:
                wait = max(wait, attempts[-self.limit] + self.window - now)
        return math.ceil(wait)

    def record(self, *keys: str) -> None:
        now = self._clock()
        if len(self._attempts) >= _MAX_KEYS:
            self._forget_old(now)
        for key in keys:
            self._attempts.setdefault(key, deque(maxlen=self.limit)).append(now)

    def clear(self, *keys: str) -> None:
        for key in keys:
            self._attempts.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        attempts = self._attempts.get(key, deque())
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        return attempts

    def _forget_old(self, now: float) -> None:
        for key in [k for k, a in self._attempts.items() if not a or a[-1] <= now - self.window]:
            del self._attempts[key]


def in_words(seconds: int) -> str:
    """`seconds` as a person would say it: "40 seconds", "1 minute", "14 minutes"."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
