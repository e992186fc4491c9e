"""CPU time per MQTT update through the built-in listener, in one process and without sockets.

    .venv/bin/python -m bench.cpu_per_update [--devices 200] [--rounds 100] [--repeat 5]

Each device is an `MqttConnection` on a transport that only counts the answers; its updates go
through the whole stack (MQTT session, device session, core, group commit on a real SQLite
file). The figures are the event-loop thread's CPU per update and the whole process's, the
median of `--repeat` runs: a steadier measure of a hot-path change than a throughput run on a
shared machine, since neither the load generator nor the scheduler is in it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from devicecloud.blobs.disk import DiskBlobs
from devicecloud.bus.memory import MemoryBus
from devicecloud.config import Settings
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.mqtt_listener import MqttConnection, MqttListener
from devicecloud.protocols import mqtt
from devicecloud.protocols.ezdata_mqtt import push_size
from devicecloud.store.open import open_store

BATCH = 5  # updates in flight per device


class CountingTransport(asyncio.Transport):
    """Counts the MODIFY answers written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0
        self.closed = False

    def write(self, data: Any) -> None:
        self.answers += bytes(data).count(b'"cmd":101')

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _up(token: str, body: dict[str, Any]) -> bytes:
    payload = orjson.dumps({"deviceToken": token, "body": body})
    return mqtt.encode(mqtt.Publish(f"$ezdata/{token}/up", payload))


async def run(devices: int, rounds: int) -> tuple[float, float]:
    """(event-loop thread, process) CPU microseconds per update of one run."""
    folder = Path(tempfile.mkdtemp(prefix="dc-cpu-"))
    store = await open_store(Settings(data_dir=folder))
    bus = MemoryBus()
    cloud = DeviceCloud(store, bus, DiskBlobs(folder / "files"), downlink_size=push_size)
    listener = MqttListener(cloud, Hub(bus), "127.0.0.1", 0)
    connections: list[tuple[MqttConnection, CountingTransport, str]] = []
    for number in range(devices):
        mac = f"AABBCC{number:06X}"
        device = await cloud.register_mac(mac, "bench")
        connection, transport = MqttConnection(listener), CountingTransport()
        connection.connection_made(transport)
        connection.data_received(mqtt.encode(mqtt.Connect(
            client_id=f"ez{mac.lower()}ez", keepalive=60, username=device.token)))
        connections.append((connection, transport, device.token))
    await asyncio.sleep(0.5)
    for connection, _, token in connections:
        connection.data_received(mqtt.encode(mqtt.Subscribe(1, ((f"$ezdata/{token}/down", 0),))))
        connection.data_received(_up(token, {"name": "t", "value": 0, "requestType": 100}))
    await asyncio.sleep(0.5)
    frames = [[_up(token, {"name": "t", "value": r + 0.5, "requestType": 101})
               for r in range(rounds)] for _, _, token in connections]
    for _, transport, _ in connections:
        transport.answers = 0
    process, thread = time.process_time(), time.thread_time()
    for start in range(0, rounds, BATCH):
        for r in range(start, min(start + BATCH, rounds)):
            for (connection, _, _), own in zip(connections, frames, strict=True):
                connection.data_received(own[r])
        goal = min(start + BATCH, rounds) * devices
        while sum(transport.answers for _, transport, _ in connections) < goal:
            await asyncio.sleep(0.0005)
    updates = devices * rounds
    figures = (1e6 * (time.thread_time() - thread) / updates,
               1e6 * (time.process_time() - process) / updates)
    await store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = [asyncio.run(run(args.devices, args.rounds)) for _ in range(args.repeat)]
    loop_us, process_us = zip(*runs, strict=True)
    print(f"event loop {statistics.median(loop_us):.1f} us/update, process "
          f"{statistics.median(process_us):.1f} us/update (median of {args.repeat}; runs: "
          + ", ".join(f"{value:.1f}" for value in loop_us) + ")")


if __name__ == "__main__":
    main()
