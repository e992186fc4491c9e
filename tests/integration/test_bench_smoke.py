"""The benchmark harness keeps working: every scenario, MQTT and baseline included, runs tiny.

No timing is asserted; only that each result has its keys and counted some work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import loadgen
from bench.baseline import MOSQUITTO

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(),
                                reason="the baseline needs Debian's Mosquitto")


def test_every_scenario_runs_tiny() -> None:
    results = loadgen.smoke()
    assert set(results) == set(loadgen.SCENARIOS)
    for name, result in results.items():
        assert result["median"]["errors"] == 0, name
        for run in result["runs"]:
            assert run["ops"] > 0, name
            assert {"started_at", "ended_at", "cpu", "server"} <= run.keys(), name
    for name in ("mqtt-updates", "mqtt-rate"):
        run = results[name]["runs"][0]
        assert run["baseline"]["ops"] > 0 and run["latency_ms"]["count"] > 0
        assert run["vs_baseline"]
    idle = results["mqtt-idle"]["runs"][0]
    assert idle["connections"] == idle["baseline"]["connections"] > 0
    assert idle["rss_after_bytes"] > 0 and idle["baseline"]["rss_after_bytes"] > 0
    soak = results["soak"]["runs"][0]
    assert all(kind["ops"] > 0 for kind in soak["by_kind"].values()), soak["by_kind"]
    assert len(soak["samples"]) >= 3 and soak["rss"]["max_bytes"] > 0
    assert soak["disk"]["last_bytes"] > soak["disk"]["first_bytes"] > 0
