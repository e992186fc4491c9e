"""MQTT scenarios, each measured against devicecloud's built-in listener and then, in the same
run, against the baseline (a private Mosquitto plus the echo backend that stores nothing):

- `mqtt-updates` (a): N devices keep K requestType 101 updates in flight; committed ops/s.
- `mqtt-rate` (c): a fixed offered rate of 101 updates (open loop); p50/p99/p99.9.
- `mqtt-idle` (d): ramp to N idle devices (keepalive 60 s) held by several load-generator
  processes; the server's resident memory per connection.
- `tls-handshakes`: C clients open TLS connections to the MQTT over TLS port and close them
  once the handshake is done, again and again; handshakes/s.

With `--tls`, (a) measures devicecloud over MQTT/TLS too, after the plain-text run of the same
run, and (d) holds MQTT/TLS connections instead of plain ones.

Devices connect as the spec says: client id `ez{mac}ez`, username = token, no password,
subscribe `$ezdata/{token}/down`, publish `$ezdata/{token}/up`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import orjson

from bench import drivers
from bench.base import Context, Meter, Params, Scenario, measure
from bench.baseline import baseline
from bench.drivers import Opener, close_all
from bench.httpclient import random_mac, register_devices
from bench.mqttclient import MqttClient, connect_device
from bench.net import open_socket
from bench.server import Target
from bench.stats import CpuWindow, rss_bytes

ROOT = Path(__file__).resolve().parent.parent.parent
Measurement = Callable[[Context, Opener], Awaitable[dict[str, Any]]]


# Opening devices -------------------------------------------------------------------------------

async def connect_devices(ctx: Context, port: int, macs: list[str], tokens: list[str],
                          concurrency: int,
                          tls: ssl.SSLContext | None = None) -> list[MqttClient]:
    """Connect and subscribe every device (over TLS with `tls`), `concurrency` handshakes at a
    time, in order."""
    host = ctx.target.host_port[0]
    slots: list[MqttClient | None] = [None] * len(macs)
    gate = asyncio.Semaphore(concurrency)
    ctx.progress.status = lambda: (
        f"connected {sum(c is not None for c in slots):,}/{len(slots):,}")

    async def one(index: int) -> None:
        async with gate:
            slots[index] = await connect_device(host, port, macs[index], tokens[index],
                                                source=ctx.sources.next(), tls=tls)

    try:
        await asyncio.gather(*(one(index) for index in range(len(macs))))
    except BaseException:
        await close_all([c for c in slots if c is not None])
        raise
    return [c for c in slots if c is not None]


def _mqtt_port(ctx: Context, p: Params) -> int:
    port = ctx.target.mqtt_port or p.get("mqtt_port")
    if not port:
        raise SystemExit("with --url, give the server's MQTT listener port: --mqtt-port PORT")
    return int(port)


async def open_devicecloud(ctx: Context, p: Params,
                           tls: bool = False) -> tuple[list[str], list[MqttClient]]:
    """Register the devices over HTTP, then connect each to the MQTT listener (with `tls`, to
    MQTT over TLS)."""
    host, port = ctx.target.host_port
    macs = [random_mac() for _ in range(p["devices"])]
    ctx.progress.status = lambda: f"registering {len(macs):,} devices"
    tokens = await register_devices(host, port, len(macs), ctx.sources, macs=macs)
    if tls:
        clients = await connect_devices(ctx, _mqtts_port(ctx), macs, tokens,
                                        p["connect_concurrency"], ctx.target.tls_client())
    else:
        clients = await connect_devices(ctx, _mqtt_port(ctx, p), macs, tokens,
                                        p["connect_concurrency"])
    return tokens, clients


def _mqtts_port(ctx: Context) -> int:
    if not ctx.target.mqtts_port:
        raise SystemExit("--tls needs a server the benchmark starts itself (no --url)")
    return ctx.target.mqtts_port


def new_devices(count: int) -> tuple[list[str], list[str]]:
    """MACs and tokens for the baseline, which registers nobody."""
    return [random_mac() for _ in range(count)], [secrets.token_hex(16) for _ in range(count)]


async def open_baseline(ctx: Context, p: Params) -> tuple[list[str], list[MqttClient]]:
    macs, tokens = new_devices(p["devices"])
    clients = await connect_devices(ctx, _mqtt_port(ctx, p), macs, tokens,
                                    p["connect_concurrency"])
    return tokens, clients


# The same measurement against devicecloud, then the baseline ------------------------------------

def _ratio(ours: float, theirs: float) -> float:
    return round(ours / theirs, 3) if theirs else 0.0


async def beside_baseline(ctx: Context, p: Params, measurement: Measurement,
                          echo: bool = True) -> dict[str, Any]:
    """Measure devicecloud (`ctx.target`), then, unless `--no-baseline`, the baseline with the
    same load; the baseline's figures (and CPU: broker plus backend) go under `baseline`."""
    result = await measurement(ctx, open_devicecloud)
    if not p["baseline"]:
        return result
    ctx.progress.say(f"devicecloud done: ops {result['ops']:,}; now the baseline")
    async with baseline(echo=echo) as base:
        cpu = CpuWindow(base.pids)
        target = Target("http://127.0.0.1:0", base.port, base.broker_pid)
        other = Context(target, ctx.sources, ctx.progress, lambda _: cpu.open(), cpu.close)
        theirs = await measurement(other, open_baseline)
        cpu.close()
    theirs["cpu"] = cpu.result
    result["baseline"] = theirs
    return result


async def run_updates(ctx: Context, p: Params) -> dict[str, Any]:
    """(a) committed updates per second, devicecloud and the baseline; with `--tls`, then
    devicecloud over MQTT/TLS (its CPU under `tls.cpu`)."""
    result = await beside_baseline(ctx, p, lambda c, o: drivers.run_updates(c, p, o))
    if "baseline" in result:
        result["vs_baseline"] = {
            "ops_per_s": _ratio(result["ops_per_s"], result["baseline"]["ops_per_s"])}
    if p["tls"]:
        ctx.progress.say(f"plain text done: ops {result['ops']:,}; now over TLS")
        cpu = CpuWindow(ctx.target.pid)
        secured = Context(ctx.target, ctx.sources, ctx.progress, lambda _: cpu.open(),
                          cpu.close)
        tls = await drivers.run_updates(secured, p, partial(open_devicecloud, tls=True))
        cpu.close()
        tls["cpu"] = cpu.result
        result["tls"] = tls
        result["vs_plain"] = {"ops_per_s": _ratio(tls["ops_per_s"], result["ops_per_s"])}
    return result


async def run_rate(ctx: Context, p: Params) -> dict[str, Any]:
    """(c) latency at a fixed offered rate, devicecloud and the baseline."""
    result = await beside_baseline(ctx, p, lambda c, o: drivers.run_rate(c, p, o))
    if "baseline" in result:
        ours, theirs = result["latency_ms"], result["baseline"]["latency_ms"]
        result["vs_baseline"] = {key: _ratio(ours[key], theirs[key])
                                 for key in ("p50", "p99", "p99_9")}
    return result


# (d) idle connections ----------------------------------------------------------------------------

class Workers:
    """Load-generator processes (`bench.idleworker`) holding a share of the connections each."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []
        self.connected: list[int] = []
        self.failed: list[int] = []
        self.errors: list[str] = []
        self.ready = 0
        self._followers: list[asyncio.Task[None]] = []

    async def start(self, jobs: list[dict[str, Any]]) -> None:
        for index, job in enumerate(jobs):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.idleworker", cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert process.stdin is not None
            process.stdin.write(orjson.dumps(job) + b"\n")
            await process.stdin.drain()
            self.processes.append(process)
            self.connected.append(0)
            self.failed.append(0)
            self.errors.append("")
            self._followers.append(asyncio.create_task(self._follow(index, process)))

    async def _follow(self, index: int, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            words = raw.decode().split(maxsplit=3)
            if words and words[0] in ("progress", "ready"):
                self.connected[index], self.failed[index] = int(words[1]), int(words[2])
                if words[0] == "ready":
                    self.errors[index] = words[3] if len(words) > 3 else ""
                    self.ready += 1

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while self.ready < len(self.processes):
            if any(p.returncode is not None for p in self.processes):
                raise RuntimeError("a load-generator process exited early")
            if time.perf_counter() > deadline:
                raise TimeoutError("connections did not finish opening")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for process in self.processes:
            if process.stdin is not None and process.returncode is None:
                process.stdin.write(b"close\n")
                await process.stdin.drain()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def hold_idle(ctx: Context, p: Params, port: int, pid: int, macs: list[str],
                    tokens: list[str], ca_file: Path | None = None) -> dict[str, Any]:
    """Ramp to len(macs) connections over `p["workers"]` processes, hold them, and take the
    server's resident memory before and after: (after - before) / connections."""
    await asyncio.sleep(p["settle"])
    before = rss_bytes(pid)
    count, shares = len(macs), max(1, p["workers"])
    devices = list(zip(macs, tokens, strict=True))
    jobs = [{"host": ctx.target.host_port[0], "port": port, "keepalive": p["keepalive"],
             "sources": ctx.sources.addresses, "concurrency": p["connect_concurrency"],
             "devices": devices[i::shares], "ca_file": str(ca_file) if ca_file else None}
            for i in range(shares)]
    workers = Workers()
    ctx.progress.status = lambda: (f"connected {sum(workers.connected):,}/{count:,}, "
                                   f"failed {sum(workers.failed):,}, server RSS "
                                   f"{rss_bytes(pid) / 2**20:,.1f} MiB")
    started = time.perf_counter()
    try:
        await workers.start(jobs)
        await workers.wait_ready(p["ramp_timeout"])
        ramp = time.perf_counter() - started
        ctx.window_opened(p["settle"])
        await asyncio.sleep(p["settle"])
        after = rss_bytes(pid)
        ctx.window_closed()
    finally:
        await workers.stop()
    connected = sum(workers.connected)
    return {
        "ops": connected,
        "errors": sum(workers.failed),
        "first_error": next((e for e in workers.errors if e), None),
        "connections": connected,
        "load_generator_processes": shares,
        "ramp_s": round(ramp, 3),
        "connections_per_s": round(connected / max(ramp, 1e-9), 1),
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_connection": round((after - before) / max(connected, 1), 1),
    }


async def run_idle(ctx: Context, p: Params) -> dict[str, Any]:
    """(d) resident memory per idle MQTT connection, devicecloud and Mosquitto."""
    if ctx.target.pid is None:
        raise SystemExit("mqtt-idle needs the server's process id (--server-pid with --url)")
    host, http_port = ctx.target.host_port
    macs = [random_mac() for _ in range(p["devices"])]
    ctx.progress.status = lambda: f"registering {len(macs):,} devices"
    tokens = await register_devices(host, http_port, len(macs), ctx.sources, macs=macs)
    if p["tls"]:
        result = await hold_idle(ctx, p, _mqtts_port(ctx), ctx.target.pid, macs, tokens,
                                 ctx.target.ca_file)
    else:
        result = await hold_idle(ctx, p, _mqtt_port(ctx, p), ctx.target.pid, macs, tokens)
    if p["baseline"]:
        ctx.progress.say(f"devicecloud done: {result['bytes_per_connection']:,} bytes per "
                         "connection; now Mosquitto")
        async with baseline(echo=False) as base:
            other = Context(Target("http://127.0.0.1:0", base.port, base.broker_pid),
                            ctx.sources, ctx.progress)
            macs, tokens = new_devices(p["devices"])
            result["baseline"] = await hold_idle(other, p, base.port, base.broker_pid, macs,
                                                 tokens)
        result["vs_baseline"] = {"bytes_per_connection": _ratio(
            result["bytes_per_connection"], result["baseline"]["bytes_per_connection"])}
    return result


# TLS handshakes ---------------------------------------------------------------------------------

class _Handshaken(asyncio.Protocol):
    """Drops the connection as soon as its TLS handshake is done."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()  # uvloop's are not subclasses


async def run_handshakes(ctx: Context, p: Params) -> dict[str, Any]:
    """C clients each open a TLS connection to the MQTT over TLS port, complete the handshake
    (verifying the certificate) and drop it, again and again: handshakes per second."""
    host, port = ctx.target.host_port[0], _mqtts_port(ctx)
    client = ctx.target.tls_client()
    loop = asyncio.get_running_loop()
    meter = Meter("handshakes")

    async def one() -> None:
        while meter.running:
            started = time.perf_counter()
            try:
                sock = await open_socket(host, port, ctx.sources.next())
                await loop.create_connection(_Handshaken, sock=sock, ssl=client,
                                             server_hostname=host)
            except OSError as problem:  # ssl.SSLError is one
                meter.failure(repr(problem))
                await asyncio.sleep(0.01)
                continue
            meter.success(time.perf_counter() - started)

    ctx.progress.status = meter.line
    clients = [asyncio.create_task(one()) for _ in range(p["clients"])]
    await measure(ctx, meter, p["warmup"], p["duration"],
                  lambda: asyncio.wait(clients, timeout=drivers.DRAIN_SECONDS))
    return meter.result()


def _handshake_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=64, help="handshakes in progress at once")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.set_defaults(tls=True)


# Options and the scenario table ----------------------------------------------------------------

def _mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt-port", type=int, default=None,
                        help="with --url: the server's MQTT listener port")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="measure devicecloud only, not Mosquitto plus the echo backend")
    parser.add_argument("--tls", action="store_true",
                        help="the server serves TLS too (a throwaway CA): (a) measures MQTT/TLS "
                             "after plain text, (d) holds MQTT/TLS connections")


def _updates_arguments(parser: argparse.ArgumentParser) -> None:
    drivers.updates_arguments(parser)
    _mqtt_arguments(parser)


def _rate_arguments(parser: argparse.ArgumentParser) -> None:
    drivers.rate_arguments(parser, 5000.0)
    _mqtt_arguments(parser)


def _idle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=19_000, help="idle MQTT connections")
    parser.add_argument("--workers", type=int, default=2,
                        help="load-generator processes holding them (each may hold at most "
                             "20,000 open files)")
    parser.add_argument("--keepalive", type=int, default=60, help="MQTT keepalive, seconds")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait before each memory reading")
    parser.add_argument("--connect-concurrency", type=int, default=200,
                        help="handshakes in progress at once per process")
    parser.add_argument("--ramp-timeout", type=float, default=300.0,
                        help="longest time to open every connection")
    _mqtt_arguments(parser)


SMOKE: Params = {"devices": 5, "duration": 0.5, "warmup": 0.2}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("mqtt-updates", "a",
             "MQTT: N devices keep K requestType 101 updates in flight: committed ops/s, "
             "beside Mosquitto plus an echo backend",
             _updates_arguments, SMOKE, run_updates,
             ("ops_per_s", "baseline.ops_per_s", "vs_baseline.ops_per_s", "latency_ms.p50",
              "latency_ms.p99", "tls.ops_per_s", "vs_plain.ops_per_s", "tls.latency_ms.p50",
              "tls.latency_ms.p99")),
    Scenario("mqtt-rate", "c",
             "MQTT: latency of requestType 101 updates at a fixed offered rate (open loop), "
             "beside Mosquitto plus an echo backend",
             _rate_arguments, {**SMOKE, "rate": 50.0}, run_rate,
             ("ops_per_s", "latency_ms.p50", "latency_ms.p99", "latency_ms.p99_9",
              "baseline.latency_ms.p50", "baseline.latency_ms.p99",
              "baseline.latency_ms.p99_9", "vs_baseline.p99")),
    Scenario("mqtt-idle", "d",
             "MQTT: resident memory per idle connection (keepalive 60 s), beside Mosquitto",
             _idle_arguments, {"devices": 20, "settle": 0.3, "workers": 2}, run_idle,
             ("connections", "bytes_per_connection", "baseline.bytes_per_connection",
              "vs_baseline.bytes_per_connection"),
             # Tens of thousands of connections from a few addresses at once: measure their
             # memory, not the limits per address.
             ("--limit", "ip.connects=off", "--limit", "ip.connections=off")),
    Scenario("tls-handshakes", "h",
             "MQTT over TLS: C clients complete TLS handshakes and drop them: handshakes/s",
             _handshake_arguments, {"clients": 2, "duration": 0.5, "warmup": 0.2},
             run_handshakes, ("ops_per_s", "latency_ms.p50", "latency_ms.p99")),
)
