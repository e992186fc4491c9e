"""The process's metrics, in a registry of its own (`prometheus_client`), served at `/metrics`.

Counters on the hot path are label children bound once (`requests_of`) and kept by whoever
counts; the commit histograms are observed once per committed batch. Figures that already exist
elsewhere (live connections, limit refusals, whether the database and the bus answer) are read
when scraped rather than counted twice.

Under the `--workers` supervisor, `PROMETHEUS_MULTIPROC_DIR` names a directory the workers
share (prometheus_client's multiprocess mode): every worker's counters and histograms land
there, each worker copies its figures there every `SHARE_SECONDS` (`share`), and whichever
worker is scraped reports the whole server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)

SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"
SHARE_SECONDS = 1.0
RequestCounters = dict[int, tuple[Counter, Counter]]
"""By request type: the (ok, error) counters of one transport."""
CONNECTIONS = "Live device connections."
REFUSED = "Requests refused by a limit."
DATABASE_UP = "1 if the last write transaction committed, else 0."
BUS_UP = "1 if the event bus is connected, else 0."


class Figures(Collector):
    """What is read at scrape time: `connections()` (live device connections by transport),
    `refusals()` (refusals by limit), `database_up()` and `bus_up()`."""

    def __init__(self, connections: Callable[[], Mapping[str, int]],
                 refusals: Callable[[], Mapping[str, int]], database_up: Callable[[], bool],
                 bus_up: Callable[[], bool]) -> None:
        self.connections, self.refusals = connections, refusals
        self.database_up, self.bus_up = database_up, bus_up

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("devicecloud_connections", CONNECTIONS, labels=["transport"])
        for transport, count in sorted(self.connections().items()):
            live.add_metric([transport], count)
        yield live
        refused = CounterMetricFamily("devicecloud_rate_limited", REFUSED, labels=["limit"])
        for name, count in sorted(self.refusals().items()):
            refused.add_metric([name], count)
        yield refused
        yield GaugeMetricFamily("devicecloud_database_up", DATABASE_UP,
                                value=int(self.database_up()))
        yield GaugeMetricFamily("devicecloud_bus_up", BUS_UP, value=int(self.bus_up()))


class SharedFigures:
    """`Figures` kept in the multiprocess directory: gauges of the live workers (summed, or
    the lowest for the 1/0 ones) and the refusals as a counter."""

    def __init__(self, figures: Figures, registry: CollectorRegistry) -> None:
        self._figures = figures
        self._live = Gauge("devicecloud_connections", CONNECTIONS, ["transport"],
                           multiprocess_mode="livesum", registry=registry)
        self._refused = Counter("devicecloud_rate_limited", REFUSED, ["limit"],
                                registry=registry)
        self._database_up = Gauge("devicecloud_database_up", DATABASE_UP,
                                  multiprocess_mode="livemin", registry=registry)
        self._bus_up = Gauge("devicecloud_bus_up", BUS_UP, multiprocess_mode="livemin",
                             registry=registry)
        self._transports: set[str] = set()
        self._counted: dict[str, int] = {}

    def share(self) -> None:
        """Write this worker's figures where the others read them."""
        counts = self._figures.connections()
        self._transports.update(counts)
        for transport in self._transports:
            self._live.labels(transport).set(counts.get(transport, 0))
        for name, refused in self._figures.refusals().items():
            self._refused.labels(name).inc(refused - self._counted.get(name, 0))
            self._counted[name] = refused
        self._database_up.set(int(self._figures.database_up()))
        self._bus_up.set(int(self._figures.bus_up()))


class Metrics:
    """One process's families; `exposition()` is the text Prometheus scrapes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter("devicecloud_requests", "EzData requests answered.",
                                 ["transport", "command", "result"], registry=self.registry)
        self.commit_batch_size = Histogram(
            "devicecloud_commit_batch_size", "Jobs in one committed write transaction.",
            buckets=BATCH_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram(
            "devicecloud_commit_seconds", "Time to run and commit one write transaction.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.push_seconds = Histogram(
            "devicecloud_push_seconds",
            "From a change's recorded time to its push handed to a device connection.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self._by_transport: dict[str, RequestCounters] = {}
        self._shared_dir = os.environ.get(SHARED_DIR, "")
        self.shared: SharedFigures | None = None

    def requests_of(self, transport: str, commands: Iterable[tuple[int, str]]) -> RequestCounters:
        """The request counters of `transport`, bound once and shared by its connections."""
        counters = self._by_transport.get(transport)
        if counters is None:
            counters = self._by_transport[transport] = {
                number: (self._requests.labels(transport, name, "ok"),
                         self._requests.labels(transport, name, "error"))
                for number, name in commands}
        return counters

    def committed(self, size: int, seconds: float) -> None:
        """One write transaction of `size` jobs committed in `seconds` (any thread)."""
        self.commit_batch_size.observe(size)
        self.commit_seconds.observe(seconds)

    def watch(self, figures: Figures) -> None:
        """Report `figures`: read when scraped, or shared with the other workers."""
        if self._shared_dir:
            self.shared = SharedFigures(figures, self.registry)
            self.shared.share()
        else:
            self.registry.register(figures)

    def exposition(self) -> bytes:
        """This process's metrics, or with the other workers the whole server's."""
        if self.shared is None:
            return generate_latest(self.registry)
        self.shared.share()
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, self._shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(everyone)
