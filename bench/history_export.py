"""History at scale: backfill a year of points into one field, export them all as CSV, and ask
for the year in 1d buckets.

    .venv/bin/python -m bench.history_export [--points 1000000] [--database-url URL]

Starts its own devicecloud, makes an account (`devicecloud accounts create`) and a device, and
imports the points through POST .../history in calls of 100,000. Then it measures the CSV
export of the whole range (wall time, rows, and the server's resident memory sampled every 20 ms
against its level before) and the one-year `aggregate=1d` JSON query (median of 5). Prints the
figures as JSON and writes them to bench/results/history-<engine>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.server import ManagedServer

YEAR_MS = 365 * 86_400_000
START = 1_735_689_600_000  # 2025-01-01T00:00:00Z
CALL = 100_000
RESULTS = Path(__file__).resolve().parent / "results"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class PeakRss:
    """The highest resident memory of a process while in the `with` block, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_kb(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def account_key(server: ManagedServer, database: list[str]) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "devicecloud", "accounts", "create", "bench@example.org",
         "--password", "bench-password-1", "--data-dir", str(server.data_dir), *database],
        check=True, capture_output=True, text=True)
    key: str = json.loads(made.stdout)["open_api_key"]
    return key


def backfill(http: httpx.Client, path: str, points: int) -> float:
    step = YEAR_MS // points
    started = time.perf_counter()
    for first in range(0, points, CALL):
        body = [{"t": START + i * step, "value": (i % 1000) / 10}
                for i in range(first, min(points, first + CALL))]
        http.post(path, json=body).raise_for_status()
    return time.perf_counter() - started


def export(http: httpx.Client, path: str, pid: int) -> dict[str, Any]:
    before = rss_kb(pid)
    rows = 0
    started = time.perf_counter()
    with PeakRss(pid) as peak, http.stream("GET", path, params={"format": "csv"}) as reply:
        reply.raise_for_status()
        for chunk in reply.iter_raw():
            rows += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    return {"rows": rows - 1, "seconds": round(seconds, 2),
            "rows_per_s": round((rows - 1) / seconds), "rss_before_mb": round(before / 1024, 1),
            "extra_rss_mb": round((peak.peak - before) / 1024, 1)}


def buckets(http: httpx.Client, path: str) -> dict[str, Any]:
    times, count = [], 0
    for _ in range(5):
        started = time.perf_counter()
        reply = http.get(path, params={"aggregate": "1d", "from": START, "to": START + YEAR_MS,
                                       "limit": 1000})
        times.append((time.perf_counter() - started) * 1000)
        reply.raise_for_status()
        count = len(reply.json()["items"])
    return {"buckets": count, "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    options = parser.parse_args()
    database = ["--database-url", options.database_url] if options.database_url else []
    server = ManagedServer(tuple(database))
    await server.start()
    try:
        assert server.process is not None
        key = account_key(server, database)
        register = httpx.post(f"{server.url}/api/v2/device/registerMac",
                              json={"deviceType": "basic", "mac": "B0A1C2D3E4F5"}).json()
        token = register["data"]
        with httpx.Client(base_url=server.url + "/api/v1", timeout=600,
                          headers={"Authorization": f"Bearer {key}"}) as http:
            device = http.post("/devices", json={"token": token}).json()
            path = f"/devices/{device['id']}/fields/temp/history"
            result = {"engine": "postgresql" if options.database_url else "sqlite",
                      "points": options.points,
                      "backfill_s": round(backfill(http, path, options.points), 1),
                      "export_csv": export(http, path, server.process.pid),
                      "year_1d": buckets(http, path)}
        print(json.dumps(result, indent=2))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"history-{result['engine']}.json").write_text(json.dumps(result, indent=2))
    finally:
        await server.stop()
        server.remove()


if __name__ == "__main__":
    asyncio.run(main())
