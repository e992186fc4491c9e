"""MQTT scenarios: to come, once the sans-I/O codec (`devicecloud.protocols.mqtt`) and the
embedded listener are in.

The intended shape, mirroring `bench/scenarios/ws.py`:

- a small client on an asyncio protocol that feeds received bytes to the codec's `Parser` and
  writes `encode(Connect/Subscribe/Publish/Pingreq ...)` (client id `ez{mac}ez`, username =
  device token, subscribe `$ezdata/{token}/down`, publish `$ezdata/{token}/up`);
- `mqtt-updates`: as `ws-updates` (N devices, K requests of 101 in flight each, committed ops/s);
- `mqtt-rate`: as `ws-rate` (latency at a fixed offered rate);
- the baseline: the same clients against Mosquitto (127.0.0.1:1883, or a private instance on a
  free port) publishing to a subscriber that answers, to compare devicecloud's cost per message
  with a plain broker's.

Each is a `bench.base.Scenario` appended to `SCENARIOS`; the runner, `--smoke`, `--repeat`, the
result files and the profiler hook then work unchanged.
"""

from __future__ import annotations

from bench.base import Scenario

SCENARIOS: tuple[Scenario, ...] = ()
