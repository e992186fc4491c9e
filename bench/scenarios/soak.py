"""The soak (g): a mixed, steady fleet against one server for a long time (default 15 minutes),
with the server's resident memory and disk use sampled every 10 s.

Half the devices speak MQTT, half WebSocket; each writes field `f` (requestType 101) at a fixed
interval. Beside them, at fixed intervals: a REST write of field `p` to a live device, timed until
the device receives its push (a WebSocket device answers each push with a 103 list, as Tab5
does); a device that drops off and comes back (it re-registers its MAC first, as firmware does at
boot); a new device's `registerMac`; and a dashboard's read (`list`, then `historyByKey`).

A server whose memory keeps growing shows it in `rss.slope_bytes_per_min`: the least-squares
slope over the second half of the samples, once start-up and the first writes have settled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bench.base import Context, Meter, Params, Scenario
from bench.drivers import (
    DRAIN_SECONDS,
    PUSH_CMDS,
    DeviceClient,
    add_fields,
    close_all,
    request_prefix,
    wait_until,
)
from bench.httpclient import RawConnection, ezdata_data, random_mac, register_body, register_devices
from bench.mqttclient import connect_device
from bench.scenarios.http import REGISTER_PATH
from bench.scenarios.ws import LOGIN_OK
from bench.stats import rss_bytes
from bench.wsclient import WsClient, connect

FIELD, PUSHED = "f", "p"  # written by the device itself; written over REST and pushed
KINDS = ("update", "push", "device_list", "reconnect", "register", "list", "history")
HTTP_TIMEOUT = 10.0
PUSH_TIMEOUT = 5.0
IDLE_REUSE_SECONDS = 4.0  # the server closes a keep-alive connection idle for 5 s


# The server's memory and disk --------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (with `--workers`, the processes that serve)."""
    found, index = [pid], 0
    while index < len(found):
        for task in Path(f"/proc/{found[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(child) for child in task.read_text().split())
        index += 1
    return found


def open_files(pids: list[int]) -> int:
    count = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            count += len(os.listdir(f"/proc/{pid}/fd"))
    return count


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:  # removed meanwhile: a finished upload's temporary file
        return 0


def disk_use(data_dir: Path) -> tuple[int, int]:
    """Bytes of the SQLite database (`devicecloud.db` with its -wal and -shm) and of `files/`."""
    database = sum(_size(path) for path in data_dir.glob("devicecloud.db*"))
    return database, sum(_size(path) for path in (data_dir / "files").rglob("*"))


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, value) points, per minute; None under two points."""
    if len(points) < 2:
        return None
    xs, ys = zip(*points, strict=True)
    try:
        return round(60 * statistics.linear_regression(xs, ys).slope, 1)
    except statistics.StatisticsError:
        return None


# HTTP -------------------------------------------------------------------------------------------

class Http:
    """One keep-alive connection for a loop of requests, opened afresh once it has been idle
    about as long as the server keeps it; each answer is the EzData `data`."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.connection = RawConnection(host, port, source)
        self.used = 0.0

    async def call(self, method: str, path: str, body: bytes = b"") -> Any:
        if time.perf_counter() - self.used > IDLE_REUSE_SECONDS:
            await self.connection.close()
        try:
            answer = await asyncio.wait_for(self.connection.request(method, path, body),
                                            HTTP_TIMEOUT)
        except BaseException:
            await self.connection.close()
            raise
        finally:
            self.used = time.perf_counter()
        return ezdata_data(*answer)

    async def close(self) -> None:
        await self.connection.close()


async def register_once(host: str, port: int, source: str, mac: str) -> str:
    """registerMac on a connection of its own, as a booting device does; the token."""
    http = Http(host, port, source)
    try:
        token = await http.call("POST", REGISTER_PATH, register_body(mac))
    finally:
        await http.close()
    if not isinstance(token, str):
        raise ValueError(f"registerMac answered {token!r}")
    return token


async def log_in_ws(host: str, port: int, token: str, source: str) -> WsClient:
    client = await connect(host, port, "/ws", source)
    try:
        client.send(orjson.dumps({"deviceToken": token}))
        reply = await client.recv()
        if reply != LOGIN_OK:
            raise RuntimeError(f"login refused: {reply[:200]}")
    except BaseException:
        client.close()
        raise
    return client


# The fleet --------------------------------------------------------------------------------------

class FleetDevice:
    """One device: its connection (replaced when it comes back), its requests awaiting answers
    (answered in order), and the REST write whose push it awaits."""

    def __init__(self, mac: str, token: str, transport: str, meters: dict[str, Meter]) -> None:
        self.mac = mac
        self.token = token
        self.transport = transport
        self.meters = meters
        self.client: DeviceClient | None = None
        self.leaving = False
        self.lock = asyncio.Lock()  # a REST write awaiting its push, or a reconnection
        self.sent: deque[tuple[int, float]] = deque()
        self.n = 0
        self.expected: tuple[int, asyncio.Future[float]] | None = None
        self._prefix = request_prefix(token, FIELD)
        self._list = orjson.dumps({"deviceToken": token, "body": {"requestType": 103}})

    @property
    def online(self) -> bool:
        return self.client is not None and not self.client.closed and not self.leaving

    def attach(self, client: DeviceClient) -> None:
        self.client = client
        self.leaving = False
        client.on_message = self.on_message

    def update(self) -> None:
        if self.client is None or not self.online:
            return
        self.n += 1
        self.client.send(self._prefix + str(self.n).encode() + b"}}")
        self.sent.append((101, time.perf_counter()))

    def on_message(self, data: bytes) -> None:
        now = time.perf_counter()
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        cmd = doc.get("cmd") if isinstance(doc, dict) else None
        if isinstance(doc, dict) and cmd in PUSH_CMDS:
            self._pushed(doc, now)
            return
        if not self.sent:
            self.meters["update"].failure(f"unexpected message: {data[:200]!r}")
            return
        asked, started = self.sent.popleft()
        meter = self.meters["update" if asked == 101 else "device_list"]
        if isinstance(doc, dict) and doc.get("code") == 200 and cmd == asked:
            meter.success(now - started)
        else:
            meter.failure(f"{self.transport} answer to {asked}: {data[:200]!r}")

    def _pushed(self, doc: dict[str, Any], now: float) -> None:
        body = doc.get("body")
        if (self.expected is not None and isinstance(body, dict) and body.get("name") == PUSHED
                and body.get("value") == self.expected[0] and not self.expected[1].done()):
            self.expected[1].set_result(now)
        if self.transport == "ws" and self.client is not None and not self.client.closed:
            self.client.send(self._list)  # Tab5 re-reads its list after every push
            self.sent.append((103, now))


async def every(seconds: float, running: Callable[[], bool], meter: Meter,
                action: Callable[[], Awaitable[None]], first: float | None = None) -> None:
    """Run `action` every `seconds` (from a random phase, or after `first` s) while `running()`;
    a slow action delays the next one rather than bunching them up. An unexpected exception
    counts as a failure of `meter`."""
    due = time.perf_counter() + (random.uniform(0, seconds) if first is None else first)
    while True:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if not running():
            return
        try:
            await action()
        except Exception as problem:
            meter.failure(repr(problem))
        due = max(due + seconds, time.perf_counter())


class Soak:
    """The fleet, the side loops and the samples of one soak run."""

    def __init__(self, ctx: Context, p: Params) -> None:
        self.ctx = ctx
        self.p = p
        self.host, self.port = ctx.target.host_port
        mqtt_port = ctx.target.mqtt_port or p["mqtt_port"]
        if not mqtt_port:
            raise SystemExit("with --url, give the server's MQTT listener port: --mqtt-port PORT")
        self.mqtt_port = int(mqtt_port)
        data_dir = ctx.target.data_dir or p["data_dir"]
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.meters = {kind: Meter(kind) for kind in KINDS}
        self.devices: list[FleetDevice] = []
        self.running = True
        self.started = 0.0
        self.samples: list[dict[str, Any]] = []
        self.http = {"push": Http(self.host, self.port, ctx.sources.next()),
                     "read": Http(self.host, self.port, ctx.sources.next())}
        self._reads = 0

    # setting up and taking down --------------------------------------------------------------

    async def open(self, device: FleetDevice) -> DeviceClient:
        source = self.ctx.sources.next()
        if device.transport == "mqtt":
            return await connect_device(self.host, self.mqtt_port, device.mac, device.token,
                                        source=source)
        return await log_in_ws(self.host, self.port, device.token, source)

    async def set_up(self) -> None:
        """Register the fleet, connect every device and add its two fields."""
        count = self.p["devices"]
        macs = [random_mac() for _ in range(count)]
        self.ctx.progress.status = lambda: f"registering {count:,} devices"
        tokens = await register_devices(self.host, self.port, count, self.ctx.sources,
                                        macs=macs)
        self.devices = [FleetDevice(mac, token, "mqtt" if index % 2 == 0 else "ws", self.meters)
                        for index, (mac, token) in enumerate(zip(macs, tokens, strict=True))]
        gate = asyncio.Semaphore(self.p["connect_concurrency"])
        opened: list[DeviceClient] = []
        self.ctx.progress.status = lambda: f"connected {len(opened):,}/{count:,}"

        async def one(device: FleetDevice) -> None:
            async with gate:
                device.client = await self.open(device)
                opened.append(device.client)

        try:
            await asyncio.gather(*(one(device) for device in self.devices))
            for name in (FIELD, PUSHED):
                await add_fields([d.client for d in self.devices], tokens, name)
        except BaseException:
            await close_all(opened)
            raise
        for device in self.devices:
            assert device.client is not None
            device.attach(device.client)

    async def take_down(self) -> int:
        """Wait for the answers still due (the caller closes the connections); the answers
        never given."""
        await wait_until(lambda: not any(d.sent for d in self.devices), DRAIN_SECONDS)
        for http in self.http.values():
            await http.close()
        return sum(len(d.sent) for d in self.devices)

    # the side loops ----------------------------------------------------------------------------

    def _free_device(self) -> FleetDevice | None:
        free = [d for d in self.devices if d.online and not d.lock.locked()]
        return random.choice(free) if free else None

    async def push(self) -> None:
        """A REST write of field `p`, timed until the device receives its push."""
        device = self._free_device()
        if device is None:
            return
        meter = self.meters["push"]
        async with device.lock:
            value = meter.ok + meter.errors + 1
            arrived = asyncio.get_running_loop().create_future()
            device.expected = (value, arrived)
            body = orjson.dumps({"name": PUSHED, "value": value, "dataType": "number"})
            started = time.perf_counter()
            try:
                await self.http["push"].call("POST", f"/api/v2/{device.token}/add", body)
                pushed = await asyncio.wait_for(arrived, PUSH_TIMEOUT)
            except TimeoutError:
                meter.failure(f"{device.transport} device got no push of {value} in "
                              f"{PUSH_TIMEOUT:.0f} s")
            else:
                meter.success(pushed - started)
            finally:
                device.expected = None

    async def reconnect(self) -> None:
        """A device drops off once its answers are in, re-registers its MAC and comes back (timed
        from the registration to the login). A device whose connection was lost, or whose
        return failed, goes first."""
        lost = [d for d in self.devices if d.client is not None and d.client.closed
                and not d.lock.locked()]
        device = random.choice(lost) if lost else self._free_device()
        if device is None:
            return
        meter = self.meters["reconnect"]
        async with device.lock:
            device.leaving = True
            if device.client is not None and not device.client.closed:
                await wait_until(lambda: not device.sent, PUSH_TIMEOUT)
            if device.sent:
                meter.failure(f"{device.transport} device: {len(device.sent)} answers missing")
                device.sent.clear()
            if device.client is not None:
                await close_all([device.client])
            started = time.perf_counter()
            try:
                token = await register_once(self.host, self.port, self.ctx.sources.next(),
                                            device.mac)
            except Exception as problem:  # it comes back all the same, as firmware retries
                token = repr(problem)
            if token != device.token:
                meter.failure(f"registerMac for {device.mac} answered {token[:200]}")
            device.attach(await self.open(device))
            if token == device.token:
                meter.success(time.perf_counter() - started)

    async def register(self) -> None:
        """A new device's first registerMac."""
        started = time.perf_counter()
        await register_once(self.host, self.port, self.ctx.sources.next(), random_mac())
        self.meters["register"].success(time.perf_counter() - started)

    async def read(self) -> None:
        """What a dashboard reads: a device's list, then a page of its field's history."""
        device = random.choice(self.devices)
        self._reads += 1
        started = time.perf_counter()
        if self._reads % 2:
            doc = await self.http["read"].call("GET", f"/api/v2/{device.token}/list")
            kind = "list"
        else:
            doc = await self.http["read"].call(
                "GET", f"/api/v2/{device.token}/historyByKey/{FIELD}?pageNum=1&pageSize=20")
            kind = "history"
        if isinstance(doc, dict) and "rows" in doc:
            self.meters[kind].success(time.perf_counter() - started)
        else:
            self.meters[kind].failure(f"{kind} answered {str(doc)[:200]}")

    async def update(self, device: FleetDevice) -> None:
        device.update()

    # the samples --------------------------------------------------------------------------------

    async def sample(self) -> None:
        pids = process_tree(self.ctx.target.pid) if self.ctx.target.pid is not None else []
        database, files = disk_use(self.data_dir) if self.data_dir is not None else (0, 0)
        self.samples.append({
            "t_s": round(time.perf_counter() - self.started, 1),
            "rss_bytes": sum(rss_bytes(pid) for pid in pids) if pids else None,
            "open_files": open_files(pids) if pids else None,
            "database_bytes": database,
            "files_bytes": files,
            "disk_bytes": database + files if self.data_dir is not None else None,
            "ops": sum(m.ok for m in self.meters.values()),
            "errors": sum(m.errors for m in self.meters.values()),
            "online": sum(d.online for d in self.devices),
            "update_p99_ms": self.meters["update"].latency.since_last()["p99"],
        })

    def status(self) -> str:
        last = self.samples[-1] if self.samples else {}
        rss, disk = last.get("rss_bytes"), last.get("disk_bytes")
        return (f"{time.perf_counter() - self.started:5.0f}/{self.p['duration']:.0f} s  "
                f"ops {sum(m.ok for m in self.meters.values()):,}  "
                f"errors {sum(m.errors for m in self.meters.values())}  "
                f"online {sum(d.online for d in self.devices)}/{len(self.devices)}  "
                f"rss {'n/a' if rss is None else f'{rss / 2**20:,.1f} MiB'}  "
                f"disk {'n/a' if disk is None else f'{disk / 2**20:,.1f} MiB'}")

    def summary(self) -> dict[str, Any]:
        rss = [(s["t_s"], s["rss_bytes"]) for s in self.samples if s["rss_bytes"] is not None]
        disk = [s["disk_bytes"] for s in self.samples if s["disk_bytes"] is not None]
        half = rss[len(rss) // 2:]
        files = [s["open_files"] for s in self.samples if s["open_files"] is not None]
        return {
            "rss": {
                "first_bytes": rss[0][1] if rss else None,
                "last_bytes": rss[-1][1] if rss else None,
                "max_bytes": max(value for _, value in rss) if rss else None,
                "slope_bytes_per_min": slope_per_minute(half),
                "slope_from_s": half[0][0] if half else None,
            },
            "disk": {
                "first_bytes": disk[0] if disk else None,
                "last_bytes": disk[-1] if disk else None,
                "growth_bytes": disk[-1] - disk[0] if disk else None,
            },
            "open_files": {"first": files[0], "last": files[-1], "max": max(files)}
            if files else None,
        }

    # the run ------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        p = self.p
        await self.set_up()

        def running() -> bool:
            return self.running

        loops: list[tuple[float, Meter, Callable[[], Awaitable[None]]]] = [
            *((p["interval"], self.meters["update"], lambda d=d: self.update(d))
              for d in self.devices),
            (p["push_interval"], self.meters["push"], self.push),
            (p["churn_interval"], self.meters["reconnect"], self.reconnect),
            (p["register_interval"], self.meters["register"], self.register),
            (p["read_interval"], self.meters["list"], self.read),
        ]
        self.started = time.perf_counter()
        for meter in self.meters.values():
            meter.open_window()
        self.ctx.window_opened(p["duration"])
        await self.sample()
        self.ctx.progress.status = self.status
        tasks = [asyncio.create_task(every(seconds, running, meter, action))
                 for seconds, meter, action in loops]
        tasks.append(asyncio.create_task(every(p["sample_every"], running, self.meters["update"],
                                               self.sample, first=p["sample_every"])))
        try:
            await asyncio.sleep(p["duration"])
            self.running = False
            await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
            unanswered = await self.take_down()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await close_all([d.client for d in self.devices if d.client is not None])
        for meter in self.meters.values():
            meter.close_window()
        self.ctx.window_closed()
        await self.sample()
        return self.result(unanswered)

    def result(self, unanswered: int) -> dict[str, Any]:
        by_kind = {kind: meter.result() for kind, meter in self.meters.items()}
        window = self.meters["update"].result()["window_s"]
        ops = sum(kind["ops"] for kind in by_kind.values())
        return {
            "window_s": window,
            "ops": ops,
            "ops_per_s": round(ops / max(window, 1e-9), 1),
            "errors": sum(kind["errors"] for kind in by_kind.values()) + unanswered,
            "errors_total": sum(kind["errors_total"] for kind in by_kind.values()),
            "first_error": next((m.first_error for m in self.meters.values()
                                 if m.first_error), None),
            "unanswered_at_end": unanswered,
            **self.summary(),
            "by_kind": by_kind,
            "devices": {"mqtt": sum(d.transport == "mqtt" for d in self.devices),
                        "ws": sum(d.transport == "ws" for d in self.devices)},
            "data_dir": str(self.data_dir) if self.data_dir is not None else None,
            "samples": self.samples,
        }


async def run_soak(ctx: Context, p: Params) -> dict[str, Any]:
    """(g) the mixed fleet for `--duration` s; RSS and disk every `--sample-every` s."""
    return await Soak(ctx, p).run()


def _soak_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=900.0, help="seconds (default 15 min)")
    parser.add_argument("--devices", type=int, default=200,
                        help="devices, half on MQTT and half on WebSocket")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between two writes of one device")
    parser.add_argument("--push-interval", type=float, default=0.2,
                        help="seconds between REST writes pushed to a live device")
    parser.add_argument("--churn-interval", type=float, default=2.0,
                        help="seconds between two devices dropping off and coming back")
    parser.add_argument("--register-interval", type=float, default=1.0,
                        help="seconds between two new devices' registerMac")
    parser.add_argument("--read-interval", type=float, default=0.5,
                        help="seconds between two dashboard reads (list, historyByKey in turn)")
    parser.add_argument("--sample-every", type=float, default=10.0,
                        help="seconds between two samples of the server's RSS and disk use")
    parser.add_argument("--connect-concurrency", type=int, default=100,
                        help="connection handshakes in progress at once while setting up")
    parser.add_argument("--mqtt-port", type=int, default=None,
                        help="with --url: the server's MQTT listener port")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="with --url: the server's data directory, for its disk use")


SCENARIOS = (
    Scenario("soak", "g",
             "a mixed MQTT, WebSocket and REST fleet for 15 minutes: the server's RSS and disk "
             "use every 10 s",
             _soak_arguments,
             {"devices": 4, "duration": 2.0, "interval": 0.2, "push_interval": 0.1,
              "churn_interval": 0.5, "register_interval": 0.5, "read_interval": 0.1,
              "sample_every": 0.5},
             run_soak,
             ("ops", "rss.first_bytes", "rss.last_bytes", "rss.max_bytes",
              "rss.slope_bytes_per_min", "disk.growth_bytes")),
)
