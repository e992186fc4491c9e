"""A latency-distribution chart (SVG, no dependencies) from result files: for each series the
median over the runs of p50, p90, p99, p99.9 and max, on a logarithmic millisecond axis.

    python -m bench.plot docs/images/latency.svg bench/results/mqtt-rate-final.json ...

Each result file gives a devicecloud series and, when it has one, a baseline series.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

import orjson

POINTS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 420, 70, 230, 40, 50


def series(path: Path) -> list[tuple[str, list[float]]]:
    """(label, median latency per point) for devicecloud and the baseline in one result file."""
    result: dict[str, Any] = orjson.loads(path.read_bytes())
    found = []
    for who in ("devicecloud", "baseline"):
        measured = [run if who == "devicecloud" else run.get("baseline")
                    for run in result["runs"]]
        summaries = [m["latency_ms"] for m in measured if m]
        if summaries:
            values = [statistics.median(s[key] for s in summaries) for key, _ in POINTS]
            found.append((f"{result['scenario']}: {who}", values))
    return found


def svg(lines: list[tuple[str, list[float]]], title: str) -> str:
    values = [v for _, vs in lines for v in vs if v > 0]
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + plot_w * index / (len(POINTS) - 1)

    def y(value: float) -> float:
        share = (math.log10(max(value, low)) - math.log10(low)) / math.log10(high / low)
        return TOP + plot_h * (1 - share)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="14">{title}</text>']
    decade = low
    while decade <= high:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(decade):.1f}" '
                   f'y2="{y(decade):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(decade) + 4:.1f}" text-anchor="end">'
                   f'{decade:g} ms</text>')
        decade *= 10
    for index, (_, label) in enumerate(POINTS):
        out.append(f'<text x="{x(index):.1f}" y="{TOP + plot_h + 20}" text-anchor="middle">'
                   f'{label}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
               'percentile (median of the runs)</text>')
    for number, (label, vs) in enumerate(lines):
        colour = COLOURS[number % len(COLOURS)]
        dash = ' stroke-dasharray="6 4"' if label.endswith("baseline") else ""
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                   f'stroke-width="2"{dash}/>')
        for i, v in enumerate(vs):
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        legend_y = TOP + 10 + 20 * number
        out.append(f'<line x1="{WIDTH - RIGHT + 15}" x2="{WIDTH - RIGHT + 40}" y1="{legend_y}" '
                   f'y2="{legend_y}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{WIDTH - RIGHT + 45}" y="{legend_y + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    lines = [line for path in argv[1:] for line in series(Path(path))]
    target = Path(argv[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(svg(lines, "Latency by percentile (log scale)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
