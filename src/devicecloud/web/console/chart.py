"""Line charts of a field's numeric history, drawn as inline SVG on the server: the history
page's chart (axes with values, each point's value and time on hover) and the sparkline of a
device page's row. A gap much longer than the usual spacing of the values breaks the line."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from devicecloud.core.models import HistoryEntry
from devicecloud.web.console.rendering import when

WIDTH = 600
HEIGHT = 200
LEFT = 56  # room for the value axis's labels
BOTTOM = 22  # room for the time axis's labels
PAD = 8
SPARK_WIDTH = 120
SPARK_HEIGHT = 28
GAP_FACTOR = 5
"""A gap between two values longer than this many times their median spacing breaks the line
(values every 10 s with a 3-minute outage: two lines, not a ramp)."""


@dataclass(frozen=True, slots=True)
class Mark:
    """One value on the chart, where it is drawn and what hovering it says."""

    x: float
    y: float
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str
    ms: int = 0  # a time axis's tick: its epoch milliseconds (the browser shows local time)


@dataclass(frozen=True, slots=True)
class Chart:
    lines: tuple[str, ...]
    """The polylines' `points`, one per stretch without a gap."""
    marks: tuple[Mark, ...]
    value_ticks: tuple[Tick, ...]
    time_ticks: tuple[Tick, ...]
    low: int | float
    high: int | float
    first_ms: int
    last_ms: int
    count: int
    width: int
    height: int
    left: int
    bottom: int


def _number(value: object) -> int | float | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def _label(value: float) -> str:
    """A value axis label: short, without a float's noise."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def stretches(times: Sequence[int]) -> list[tuple[int, int]]:
    """The [start, end) index ranges of `times` (ascending) with no gap longer than GAP_FACTOR
    times the median spacing between them."""
    if len(times) < 3:
        return [(0, len(times))]
    spacing = statistics.median(b - a for a, b in itertools.pairwise(times))
    limit = GAP_FACTOR * max(spacing, 1)
    parts, start = [], 0
    for index in range(1, len(times)):
        if times[index] - times[index - 1] > limit:
            parts.append((start, index))
            start = index
    parts.append((start, len(times)))
    return parts


def _chart(rows: Sequence[HistoryEntry], width: int, height: int, left: int,
           bottom: int) -> Chart | None:
    samples = [(row.created_at, number) for row in reversed(rows)
               if (number := _number(row.value)) is not None]
    if len(samples) < 2:
        return None
    first, last = samples[0][0], samples[-1][0]
    low = min(value for _, value in samples)
    high = max(value for _, value in samples)
    inner_w, inner_h = width - left - PAD, height - bottom - 2 * PAD

    def x_of(index: int, when_ms: int) -> float:
        along = (when_ms - first) / (last - first) if last > first else index / (len(samples) - 1)
        return left + along * inner_w

    def y_of(value: float) -> float:
        up = (value - low) / (high - low) if high > low else 0.5
        return PAD + (1 - up) * inner_h

    marks = tuple(Mark(round(x_of(i, t), 1), round(y_of(v), 1), f"{_label(v)} at {when(t)}")
                  for i, (t, v) in enumerate(samples))
    lines = tuple(" ".join(f"{m.x:.1f},{m.y:.1f}" for m in marks[start:end])
                  for start, end in stretches([t for t, _ in samples]))
    levels = (high, (low + high) / 2, low) if high > low else (high,)
    value_ticks = tuple(Tick(round(y_of(v), 1), _label(v)) for v in levels)
    time_ticks = (Tick(left, when(first), first), Tick(left + inner_w, when(last), last))
    return Chart(lines, marks, value_ticks, time_ticks, low, high, first, last, len(samples),
                 width, height, left, bottom)


def numeric_chart(rows: Sequence[HistoryEntry]) -> Chart | None:
    """The history page's chart of the numeric values among `rows` (newest first, as history
    pages come), or None when fewer than two values are numbers."""
    return _chart(rows, WIDTH, HEIGHT, LEFT, BOTTOM)


def sparkline(rows: Sequence[HistoryEntry]) -> Chart | None:
    """A device page row's small chart of the same values: no axes (its lowest and highest
    values are written next to it), the same breaks at gaps."""
    return _chart(rows, SPARK_WIDTH, SPARK_HEIGHT + 2 * PAD, 0, 0)
