"""The process's metrics, in a registry of its own (`prometheus_client`), served at `/metrics`.

What the hot path counts (requests answered, push delays) it counts in plain integers: a
prometheus_client counter takes a lock on every increment (about 0.8 us against 0.05 us), so these
tallies are turned into families only when scraped (`Tallies`). The commit histograms are observed
once per committed batch, from the writer's thread, with prometheus_client's own. Figures that
already exist elsewhere (live connections, limit refusals, whether the database and the bus
answer) are read when scraped rather than counted twice.

Under the `--workers` supervisor, `PROMETHEUS_MULTIPROC_DIR` names a directory the workers
share (prometheus_client's multiprocess mode): every worker's counters and histograms land
there, each worker copies its figures and tallies there every `SHARE_SECONDS` (`share`), and
whichever worker is scraped reports the whole server.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)

SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"
SHARE_SECONDS = 1.0
RequestCounts = dict[int, list[int]]
"""By request type: `[answered, refused]` of one transport, counted in place."""
REQUESTS = "EzData requests answered."
PUSH_SECONDS = "From a change's recorded time to its push handed to a device connection."
CONNECTIONS = "Live device connections."
REFUSED = "Requests refused by a limit."
DATABASE_UP = "1 if the last write transaction committed, else 0."
BUS_UP = "1 if the event bus is connected, else 0."
TLS_EXPIRY = "When the certificate in use ends (unix seconds); absent without TLS."


class Tally:
    """A histogram counted in plain integers: `observe` finds the bucket and adds one."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class Tallies(Collector):
    """The hot path's counts: requests by transport, command and result, and push delays (in a
    `Tally`, or with workers in prometheus_client's histogram, which they share)."""

    def __init__(self, push_seconds: Tally | Histogram | None = None) -> None:
        self.requests: dict[str, tuple[RequestCounts, dict[int, str]]] = {}
        self.push_seconds = push_seconds if push_seconds is not None else Tally(LATENCY_BUCKETS)

    def requests_of(self, transport: str, commands: Iterable[tuple[int, str]]) -> RequestCounts:
        """The counts of `transport` (made once, shared by its connections)."""
        kept = self.requests.get(transport)
        if kept is None:
            names = dict(commands)
            kept = self.requests[transport] = ({number: [0, 0] for number in names}, names)
        return kept[0]

    def request_counts(self) -> Iterator[tuple[tuple[str, str, str], int]]:
        """((transport, command, result), count) of every request counted so far."""
        for transport, (counts, names) in self.requests.items():
            for number, (answered, refused) in counts.items():
                yield (transport, names[number], "ok"), answered
                yield (transport, names[number], "error"), refused

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("devicecloud_requests", REQUESTS,
                                       labels=["transport", "command", "result"])
        for labels, count in self.request_counts():
            requests.add_metric(labels, count)
        yield requests
        if isinstance(self.push_seconds, Tally):
            yield self.push_seconds.family("devicecloud_push_seconds", PUSH_SECONDS)


class Figures(Collector):
    """What is read at scrape time: `connections()` (live device connections by transport),
    `refusals()` (refusals by limit), `database_up()`, `bus_up()` and `tls_expiry()` (when the
    certificate in use ends, or None)."""

    def __init__(self, connections: Callable[[], Mapping[str, int]],
                 refusals: Callable[[], Mapping[str, int]], database_up: Callable[[], bool],
                 bus_up: Callable[[], bool],
                 tls_expiry: Callable[[], float | None] = lambda: None) -> None:
        self.connections, self.refusals = connections, refusals
        self.database_up, self.bus_up, self.tls_expiry = database_up, bus_up, tls_expiry

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
        expiry = self.tls_expiry()
        if expiry is not None:
            yield GaugeMetricFamily("devicecloud_tls_certificate_expiry_timestamp_seconds",
                                    TLS_EXPIRY, value=expiry)


class SharedFigures:
    """`Figures` kept in the multiprocess directory: gauges of the live workers (summed, or
    the lowest for the 1/0 ones) and the refusals as a counter."""

    def __init__(self, figures: Figures, tallies: Tallies, registry: CollectorRegistry) -> None:
        self._figures, self._tallies = figures, tallies
        self._requests = Counter("devicecloud_requests", REQUESTS,
                                 ["transport", "command", "result"], registry=registry)
        self._live = Gauge("devicecloud_connections", CONNECTIONS, ["transport"],
                           multiprocess_mode="livesum", registry=registry)
        self._refused = Counter("devicecloud_rate_limited", REFUSED, ["limit"],
                                registry=registry)
        self._database_up = Gauge("devicecloud_database_up", DATABASE_UP,
                                  multiprocess_mode="livemin", registry=registry)
        self._bus_up = Gauge("devicecloud_bus_up", BUS_UP, multiprocess_mode="livemin",
                             registry=registry)
        self._tls_expiry: Gauge | None = None  # made once there is a certificate
        self._registry = registry
        self._transports: set[str] = set()
        self._counted: dict[str, int] = {}
        self._requests_counted: dict[tuple[str, str, str], int] = {}

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
        expiry = self._figures.tls_expiry()
        if expiry is not None:
            if self._tls_expiry is None:  # the soonest end among the workers
                self._tls_expiry = Gauge("devicecloud_tls_certificate_expiry_timestamp_seconds",
                                         TLS_EXPIRY, multiprocess_mode="livemin",
                                         registry=self._registry)
            self._tls_expiry.set(expiry)
        for labels, count in self._tallies.request_counts():
            self._requests.labels(*labels).inc(count - self._requests_counted.get(labels, 0))
            self._requests_counted[labels] = count


class Metrics:
    """One process's families; `exposition()` is the text Prometheus scrapes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commit_batch_size = Histogram(
            "devicecloud_commit_batch_size", "Jobs in one committed write transaction.",
            buckets=BATCH_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram(
            "devicecloud_commit_seconds", "Time to run and commit one write transaction.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self._shared_dir = os.environ.get(SHARED_DIR, "")
        if self._shared_dir:
            self.tallies = Tallies(Histogram("devicecloud_push_seconds", PUSH_SECONDS,
                                             buckets=LATENCY_BUCKETS, registry=self.registry))
        else:
            self.tallies = Tallies()
            self.registry.register(self.tallies)
        self.push_seconds = self.tallies.push_seconds
        self.requests_of = self.tallies.requests_of
        self.shared: SharedFigures | None = None

    def committed(self, size: int, seconds: float) -> None:
        """One write transaction of `size` jobs committed in `seconds` (any thread)."""
        self.commit_batch_size.observe(size)
        self.commit_seconds.observe(seconds)

    def watch(self, figures: Figures) -> None:
        """Report `figures` and the tallies: read when scraped, or shared with the workers."""
        if self._shared_dir:
            self.shared = SharedFigures(figures, self.tallies, self.registry)
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
