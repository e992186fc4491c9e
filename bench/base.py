"""What every scenario shares: its description, its run context and its meter."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.net import Sources
from bench.server import Target
from bench.stats import Latencies, Progress

Params = dict[str, Any]


@dataclass
class Context:
    """What a scenario run gets: the server, source addresses, progress line, and hooks to call
    when its measurement window opens (with its length) and closes: the runner measures CPU
    use and starts the profiler there."""

    target: Target
    sources: Sources
    progress: Progress
    window_opened: Callable[[float], None] = lambda seconds: None
    window_closed: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    """One benchmark: its command name, options, tiny `--smoke` settings and its coroutine.

    `headline` names the result keys (dotted for nested ones, e.g. `latency_ms.p99`) whose
    median the runner reports across repeats; `server_args` go to a server the runner starts.
    """

    name: str
    letter: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    smoke: Params
    run: Callable[[Context, Params], Awaitable[dict[str, Any]]]
    headline: tuple[str, ...]
    server_args: tuple[str, ...] = ()  # for the server the runner starts


class Meter:
    """Counts successes and errors, keeps latencies of operations inside the window, and
    formats the once-a-second progress line."""

    def __init__(self, unit: str = "ops") -> None:
        self.unit = unit
        self.ok = 0
        self.errors = 0
        self.window_ok = 0
        self.window_errors = 0
        self.latency = Latencies()
        self.measuring = False
        self.running = True
        self.window_start = 0.0
        self.window_end = 0.0
        self._last_ok = 0
        self._last_time = time.perf_counter()
        self.first_error: str | None = None

    def success(self, seconds: float, in_window: bool | None = None) -> None:
        """One success taking `seconds`; it counts towards the result if `in_window` (by
        default: if it completes while the window is open)."""
        self.ok += 1
        if self.measuring if in_window is None else in_window:
            self.window_ok += 1
            self.latency.add(seconds)

    def failure(self, what: str, in_window: bool | None = None) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = what[:300]
        if self.measuring if in_window is None else in_window:
            self.window_errors += 1

    def open_window(self) -> None:
        self.measuring = True
        self.window_start = time.perf_counter()

    def close_window(self) -> None:
        self.measuring = False
        self.window_end = time.perf_counter()

    def line(self, extra: str = "") -> str:
        now = time.perf_counter()
        rate = (self.ok - self._last_ok) / max(now - self._last_time, 1e-9)
        self._last_ok, self._last_time = self.ok, now
        recent = self.latency.since_last()
        phase = "measuring" if self.measuring else ("warm-up" if self.running else "draining")
        text = (f"{phase}: {rate:8,.0f} {self.unit}/s  total {self.ok:,}  errors {self.errors}")
        if recent["count"]:
            text += f"  p50 {recent['p50']:.2f} ms  p99 {recent['p99']:.2f} ms"
        return text + (f"  {extra}" if extra else "")

    def result(self) -> dict[str, Any]:
        window = max(self.window_end - self.window_start, 1e-9)
        return {
            "window_s": round(window, 3),
            "ops": self.window_ok,
            "ops_per_s": round(self.window_ok / window, 1),
            "errors": self.window_errors,
            "errors_total": self.errors,
            "first_error": self.first_error,
            "latency_ms": self.latency.summary(),
        }


async def measure(ctx: Context, meter: Meter, warmup: float, duration: float,
                  drain: Callable[[], Awaitable[object]]) -> None:
    """The shape of every timed run: `warmup` s unmeasured, then the window open for `duration`
    s, then the drivers told to stop (`meter.running`) and `drain()` awaited."""
    await asyncio.sleep(warmup)
    meter.open_window()
    ctx.window_opened(duration)
    await asyncio.sleep(duration)
    meter.close_window()
    ctx.window_closed()
    meter.running = False
    await drain()
