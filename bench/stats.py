"""Latency samples, percentiles, the once-a-second progress line and machine facts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any


def percentile(ordered: list[float] | array[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted samples (0.0 when there are none)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Latencies:
    """Latency samples in seconds, kept compactly; summaries come out in milliseconds."""

    __slots__ = ("_mark", "samples")

    def __init__(self) -> None:
        self.samples: array[float] = array("d")
        self._mark = 0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> dict[str, float]:
        """Count, mean, p50, p90, p99, p99.9 and max, in milliseconds."""
        return summarise(self.samples)

    def since_last(self) -> dict[str, float]:
        """The summary of the samples added since the previous call (for progress lines)."""
        recent = self.samples[self._mark:]
        self._mark = len(self.samples)
        return summarise(recent)


def summarise(samples: array[float] | list[float]) -> dict[str, float]:
    """Percentiles of latency samples given in seconds, as milliseconds."""
    ordered = sorted(samples)
    count = len(ordered)
    return {
        "count": count,
        "mean": round(1000 * sum(ordered) / count, 3) if count else 0.0,
        "p50": round(1000 * percentile(ordered, 0.50), 3),
        "p90": round(1000 * percentile(ordered, 0.90), 3),
        "p99": round(1000 * percentile(ordered, 0.99), 3),
        "p99_9": round(1000 * percentile(ordered, 0.999), 3),
        "max": round(1000 * ordered[-1], 3) if count else 0.0,
    }


class Progress:
    """Prints one status line per second; `status` is swapped as the run moves through phases."""

    def __init__(self, name: str, quiet: bool = False) -> None:
        self.name = name
        self.quiet = quiet
        self.started = time.perf_counter()
        self.status: Callable[[], str] = lambda: "starting"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def say(self, text: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            print(f"[{self.name} {elapsed:5.1f}s] {text}", flush=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.say(self.status())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_at_start": list(os.getloadavg()),
    }


def process_cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU seconds of this process (or of process `pid`, from /proc)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU used between `open()` and `close()` by the load generator, the server, and the rest
    of the machine (other users of a shared machine disturb the figures: this shows how much).
    The server may be several processes (the baseline: a broker and its backend)."""

    def __init__(self, server_pid: int | tuple[int, ...] | None) -> None:
        self.server_pids = (server_pid,) if isinstance(server_pid, int) else server_pid or ()
        self._start: tuple[float, float, float, float] | None = None
        self.result: dict[str, float] | None = None

    def _sample(self) -> tuple[float, float, float, float]:
        server = sum(process_cpu_seconds(pid) for pid in self.server_pids)
        return time.perf_counter(), process_cpu_seconds(), server, machine_busy_seconds()

    def open(self) -> None:
        self._start = self._sample()

    def close(self) -> None:
        if self._start is None or self.result is not None:
            return
        now = self._sample()
        wall = max(now[0] - self._start[0], 1e-9)
        loadgen, server, machine = ((now[i] - self._start[i]) / wall for i in (1, 2, 3))
        self.result = {"loadgen_cores": round(loadgen, 3)}
        if self.server_pids:
            self.result["server_cores"] = round(server, 3)
            self.result["other_cores"] = round(max(0.0, machine - loadgen - server), 3)
        self.result["machine_busy_cores"] = round(machine, 3)


async def wait_for_quiet(max_seconds: float, threshold: float = 0.3) -> float:
    """Wait (at most `max_seconds`) for a second in which the machine's busy cores stay below
    `threshold`; return the last second's busy cores. For shared machines."""
    deadline = time.perf_counter() + max_seconds
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(1.0)
        busy = machine_busy_seconds() - before
        if busy < threshold or time.perf_counter() >= deadline:
            return round(busy, 3)


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (VmRSS), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
