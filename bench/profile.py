"""Summarise a py-spy raw profile (collapsed stacks): where each thread's time goes.

    .venv/bin/python -m bench.profile /tmp/profile.txt [--top 20]     # or a .txt.gz

Self time is the share of samples in which a function was the innermost frame; total time the
share in which it was anywhere on the stack. Shares are of the thread's own samples.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass
class ThreadProfile:
    """Samples of one thread: per function self and total counts, self counts per package."""

    name: str
    samples: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    total_counts: Counter[str] = field(default_factory=Counter)
    package_counts: Counter[str] = field(default_factory=Counter)


def package_of(frame: str) -> str:
    """The top-level package (or file) a frame belongs to: `uvicorn`, `asyncio`, `sqlite3`..."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match.group("file")
    return path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")


def parse(lines: Iterable[str]) -> dict[str, ThreadProfile]:
    """Read `frame;frame;... count` lines; the first frame names the thread (`--threads`)."""
    threads: dict[str, ThreadProfile] = defaultdict(lambda: ThreadProfile(""))
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread_name = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "all"
        if frames[0].startswith(("thread", "process")):
            frames = frames[1:]
        profile = threads[thread_name]
        profile.name = thread_name
        profile.samples += count
        if frames:
            profile.self_counts[frames[-1]] += count
            profile.package_counts[package_of(frames[-1])] += count
        for frame in set(frames):
            profile.total_counts[frame] += count
    return dict(threads)


def report(threads: dict[str, ThreadProfile], top: int = 20) -> str:
    """A plain-text summary, threads with the most samples first."""
    out: list[str] = []
    everything = sum(t.samples for t in threads.values()) or 1
    for profile in sorted(threads.values(), key=lambda t: -t.samples):
        n = profile.samples or 1
        out.append(f"== thread {profile.name}: {profile.samples} samples "
                   f"({100 * profile.samples / everything:.1f}% of all)")
        out.append("-- self time by package")
        out.extend(f"{100 * c / n:6.1f}%  {name}" for name, c in
                   profile.package_counts.most_common(top))
        out.append("-- self time by function")
        out.extend(f"{100 * c / n:6.1f}%  {name}" for name, c in
                   profile.self_counts.most_common(top))
        out.append("-- total time by function (leaving out frames on every sample)")
        below = [(name, c) for name, c in profile.total_counts.most_common()
                 if c < 0.99 * n]
        out.extend(f"{100 * c / n:6.1f}%  {name}" for name, c in below[:top])
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("path", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=20, help="rows per table")
    args = parser.parse_args(argv)
    opener = gzip.open if args.path.suffix == ".gz" else open
    with opener(args.path, "rt") as lines:
        print(report(parse(lines), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
