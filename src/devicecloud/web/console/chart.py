"""A line chart of a field's numeric history, as the coordinates of an inline SVG polyline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from devicecloud.core.models import HistoryEntry

WIDTH = 600
HEIGHT = 200
PAD = 8


@dataclass(frozen=True, slots=True)
class Chart:
    points: str
    low: int | float
    high: int | float
    first_ms: int
    last_ms: int
    count: int
    width: int = WIDTH
    height: int = HEIGHT


def _number(value: object) -> int | float | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def numeric_chart(rows: Sequence[HistoryEntry]) -> Chart | None:
    """The chart of the numeric values among `rows` (newest first, as history pages come), or
    None when fewer than two values are numbers."""
    samples = [(row.created_at, number) for row in reversed(rows)
               if (number := _number(row.value)) is not None]
    if len(samples) < 2:
        return None
    first, last = samples[0][0], samples[-1][0]
    low = min(value for _, value in samples)
    high = max(value for _, value in samples)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    points = []
    for index, (when, value) in enumerate(samples):
        along = (when - first) / (last - first) if last > first else index / (len(samples) - 1)
        up = (value - low) / (high - low) if high > low else 0.5
        points.append(f"{PAD + along * inner_w:.1f},{PAD + (1 - up) * inner_h:.1f}")
    return Chart(" ".join(points), low, high, first, last, len(samples))
