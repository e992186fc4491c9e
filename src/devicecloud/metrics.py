"""The process's metrics, in a registry of its own (`prometheus_client`), served at `/metrics`.

Counters on the hot path are label children bound once (`requests_of`) and kept by whoever
counts; the commit histograms are observed once per committed batch. Figures that already exist
elsewhere (live connections, limit refusals, whether the database and the bus answer) are read
when scraped rather than counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)

RequestCounters = dict[int, tuple[Counter, Counter]]
"""By request type: the (ok, error) counters of one transport."""


class Figures(Collector):
    """What is read at scrape time: `connections()` (live device connections by transport),
    `refusals()` (refusals by limit), `database_up()` and `bus_up()`."""

    def __init__(self, connections: Callable[[], Mapping[str, int]],
                 refusals: Callable[[], Mapping[str, int]], database_up: Callable[[], bool],
                 bus_up: Callable[[], bool]) -> None:
        self._connections, self._refusals = connections, refusals
        self._database_up, self._bus_up = database_up, bus_up

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("devicecloud_connections", "Live device connections.",
                                 labels=["transport"])
        for transport, count in sorted(self._connections().items()):
            live.add_metric([transport], count)
        yield live
        refused = CounterMetricFamily("devicecloud_rate_limited", "Requests refused by a limit.",
                                      labels=["limit"])
        for name, count in sorted(self._refusals().items()):
            refused.add_metric([name], count)
        yield refused
        yield GaugeMetricFamily("devicecloud_database_up",
                                "1 if the last write transaction committed, else 0.",
                                value=int(self._database_up()))
        yield GaugeMetricFamily("devicecloud_bus_up", "1 if the event bus is connected, else 0.",
                                value=int(self._bus_up()))


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
        self.registry.register(figures)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
