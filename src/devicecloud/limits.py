"""Limits with reasons: token buckets by name, set with `--limit NAME=RATE[:BURST]`.

RATE is `50/s`, `30/min` or `1000/h` (or `off`); BURST defaults to one second's worth, at least 1.
A limit is counted per key (a device, an address); refusing says which limit and when to retry.
Counted in this process's memory; the least recently used keys are forgotten beyond `MAX_KEYS`,
so the table stays bounded whatever keys arrive.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAX_KEYS = 100_000
_PER = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}

DEFAULTS = {
    # A device registers once a boot (a Tab5 every 2 s while it fails), and a classroom behind
    # one address boots together; beyond that one address may not sweep MACs for tokens.
    "ip.register": "10/s:200",
}


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int
    text: str

    def __str__(self) -> str:
        return self.text


def parse_rate(text: str) -> Rate | None:
    """`50/s`, `30/min:60` ... as a Rate; None for `off`; ValueError for anything else."""
    spec = text.strip().lower()
    if spec == "off":
        return None
    rate_text, _, burst_text = spec.partition(":")
    count, _, unit = rate_text.partition("/")
    try:
        amount = float(count)
        per_second = amount / _PER[unit or "s"]
        burst = int(burst_text) if burst_text else max(1, math.ceil(per_second))
    except (KeyError, ValueError):
        raise ValueError(f"not a rate: {text!r} (say 50/s, 30/min, 1000/h[:BURST] "
                         "or off)") from None
    if amount <= 0 or burst < 1:
        raise ValueError(f"not a rate: {text!r} (it must allow at least one)")
    return Rate(per_second, burst, rate_text)


def parse_limits(items: Iterable[str]) -> dict[str, Rate | None]:
    """The defaults overridden by `NAME=RATE[:BURST]` items; ValueError names what is wrong."""
    chosen: dict[str, Rate | None] = {name: parse_rate(rate) for name, rate in DEFAULTS.items()}
    for item in items:
        name, sep, rate = item.partition("=")
        if not sep or name.strip() not in DEFAULTS:
            raise ValueError(f"--limit {item!r}: say NAME=RATE with NAME one of "
                             f"{', '.join(sorted(DEFAULTS))}")
        chosen[name.strip()] = parse_rate(rate)
    return chosen


class Limit:
    """One named limit, counted per key; `refused` counts the refusals."""

    def __init__(self, name: str, rate: Rate | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.rate = name, rate
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.refused = 0

    def wait(self, key: str) -> float:
        """0 if `key` may go ahead now (counted), else the seconds until it may."""
        rate = self.rate
        if rate is None:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(rate.burst), now))
        tokens = min(float(rate.burst), tokens + (now - then) * rate.per_second)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate.per_second
            self.refused += 1
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return wait

    def refusal(self, wait: float) -> str:
        """What a refused client is told: the limit, and when to retry."""
        return f"rate limited: {self.name} {self.rate}, retry in {wait:.1f} s"


def limits_of(items: Iterable[str]) -> dict[str, Limit]:
    return {name: Limit(name, rate) for name, rate in parse_limits(items).items()}
