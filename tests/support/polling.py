"""Waiting for a condition that another process makes true at a time of its choosing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, timeout: float = 5.0,
               every: float = 0.05) -> T:
    """The first truthy result of `check()`, tried every `every` seconds; fails the test, saying
    `what` was awaited and what `check()` last gave, if none came within `timeout` seconds.
    From async code, run it with `asyncio.to_thread`."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what}: still {result!r} after {timeout:g} s"
        time.sleep(every)
    return result
