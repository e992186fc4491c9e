"""What feeds the metrics: the writer's commits and state, limits' refusals, the exposition."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from devicecloud.core.errors import Unavailable
from devicecloud.limits import Limit, parse_rate
from devicecloud.metrics import LATENCY_BUCKETS, Figures, Metrics, Tally
from devicecloud.store.group_commit import GroupCommitter
from devicecloud.store.sqlite import connect


def _samples(metrics: Metrics) -> dict[str, float]:
    """Each sample name's total over its labels (histogram buckets left out)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if "le" not in sample.labels:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _insert(conn: sqlite3.Connection, k: int) -> int:
    conn.execute("INSERT INTO t (k) VALUES (?)", (k,))
    return k


async def test_commits_are_observed_and_an_unreachable_database_is_down(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    reachable = False

    def connection() -> sqlite3.Connection:
        if not reachable:
            raise OSError("connection refused")
        return connect(path)

    metrics = Metrics()
    writer = GroupCommitter(connection)
    writer.on_commit = metrics.committed
    metrics.watch(Figures(dict, dict, lambda: writer.up, lambda: True))
    try:
        await writer.call(_insert, 1)
    except Unavailable:
        pass
    else:
        raise AssertionError("the write should have failed")
    assert _samples(metrics)["devicecloud_database_up"] == 0
    assert _samples(metrics)["devicecloud_commit_batch_size_count"] == 0
    reachable = True
    assert await writer.call(_insert, 2) == 2
    samples = _samples(metrics)
    assert samples["devicecloud_database_up"] == 1
    assert samples["devicecloud_commit_batch_size_count"] == 1
    assert samples["devicecloud_commit_batch_size_sum"] == 1
    assert samples["devicecloud_commit_seconds_count"] == 1
    await writer.close()


def test_refusals_are_counted_per_limit() -> None:
    limit = Limit("ip.register", parse_rate("1/h:2"), clock=lambda: 0.0)
    assert [(limit.check("a") or 0) > 0 for _ in range(4)] == [False, False, True, True]
    assert limit.check("b") == 0
    metrics = Metrics()
    metrics.watch(Figures(lambda: {"mqtt": 3}, lambda: {limit.name: limit.refused},
                          lambda: True, lambda: False))
    samples = _samples(metrics)
    assert samples["devicecloud_rate_limited_total"] == 2
    assert samples["devicecloud_connections"] == 3
    assert samples["devicecloud_bus_up"] == 0


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.requests_of("mqtt", [(101, "modify")])[101][0] += 1
    second.requests_of("mqtt", [(101, "modify")])
    assert _samples(first)["devicecloud_requests_total"] == 1
    assert _samples(second)["devicecloud_requests_total"] == 0


def test_a_tally_exposes_what_prometheus_clients_histogram_would() -> None:
    registry = CollectorRegistry()
    reference = Histogram("delay_seconds", "d", buckets=LATENCY_BUCKETS, registry=registry)
    tally = Tally(LATENCY_BUCKETS)
    for value in (0.0, 0.0005, 0.0007, 0.003, 0.003, 0.2, 9.9, 10.0, 11.0, 500.0):
        reference.observe(value)
        tally.observe(value)
    theirs = {(s.name, s.labels.get("le")): s.value
              for s in reference.collect()[0].samples if not s.name.endswith("_created")}
    ours = {(s.name, s.labels.get("le")): s.value
            for s in tally.family("delay_seconds", "d").samples}
    assert ours == theirs
