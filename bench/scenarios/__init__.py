"""The scenarios, by command name. MQTT scenarios go in `bench/scenarios/mqtt.py` and are added
to `SCENARIOS` there (see that module)."""

from __future__ import annotations

from bench.base import Scenario
from bench.scenarios import http, mqtt, soak, ws

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (*ws.SCENARIOS, *http.SCENARIOS, *mqtt.SCENARIOS, *soak.SCENARIOS)
}
