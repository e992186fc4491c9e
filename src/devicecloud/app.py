"""The composition root: wires the core to its adapters and the transports to the core."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from devicecloud import __version__
from devicecloud.acme import Renewal
from devicecloud.blobs.disk import DiskBlobs
from devicecloud.bus.memory import MemoryBus
from devicecloud.bus.redis import RedisBus
from devicecloud.config import Settings, StartupError, load_secret, unusable_database
from devicecloud.core.accounts import Accounts
from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.espai.platform import EspAi
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.espai_ws import serve_espai_websocket
from devicecloud.gateways.ezdata_ws import serve_ezdata_websocket
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.mqtt_bridge import MqttBridge
from devicecloud.gateways.mqtt_listener import MqttListener
from devicecloud.gateways.partition import LiveMembers, Partition, StaticPartition
from devicecloud.gateways.presence import LocalPresence, RedisPresence
from devicecloud.gateways.resync import Resync
from devicecloud.limits import limits_of
from devicecloud.metrics import SHARE_SECONDS, Figures, Metrics, SharedFigures
from devicecloud.protocols.ezdata_mqtt import push_size
from devicecloud.store.open import open_store
from devicecloud.tls import Certificates
from devicecloud.web import (
    acme_http,
    api_v1,
    console,
    espai_http,
    ezdata_http,
    metrics_http,
    mqtt_auth_http,
    openapi,
)
from devicecloud.web.api_v1 import events as api_events
from devicecloud.web.api_v1.problems import router_problem
from devicecloud.web.errors import ezdata_refusal
from devicecloud.web.redirect import HttpsPages
from devicecloud.web.responses import ez_error, json_response
from devicecloud.web.services import LifespanState, Services, services, started

log = logging.getLogger(__name__)
RELEASE_SWEEP_SECONDS = 60.0
SLOW_BUS_MS = 500  # a bus round trip slower than this makes /healthz say degraded

def mqtt_partition(settings: Settings, presence: LocalPresence) -> Partition:
    """The devices this instance answers for if the broker cannot share a subscription: a fixed
    `--mqtt-partition`, else with a Redis bus a share of the live instances, else all."""
    index, count = settings.partition
    if count == 1 and isinstance(presence, RedisPresence):
        return LiveMembers(presence.membership)
    return StaticPartition(index, count)


async def sweep_releases(cloud: DeviceCloud) -> None:
    """Carry out the releases owners left unanswered, once a minute (in every process: each
    release happens once, whichever process gets to it)."""
    while True:
        await asyncio.sleep(RELEASE_SWEEP_SECONDS)
        try:
            await cloud.release_due()
        except DeviceCloudError as problem:
            log.warning("releases due: %s", problem)


async def share_metrics(shared: SharedFigures) -> None:
    """Copy this worker's figures for the other workers, every `SHARE_SECONDS`."""
    while True:
        await asyncio.sleep(SHARE_SECONDS)
        shared.share()


async def healthz(request: Request) -> Response:
    """`ok` while everything works; `degraded` while the bus is down or slow (devices still
    work; pushes to other processes wait for it)."""
    bus = services(request).bus
    if isinstance(bus, RedisBus):
        health = bus.health()
        round_trip = bus.round_trip_ms
        slow = round_trip is None or round_trip > SLOW_BUS_MS
        status = "degraded" if slow or not health["connected"] else "ok"
        return json_response({"status": status, "version": __version__, "bus": health})
    return json_response({"status": "ok", "version": __version__, "bus": {"kind": "memory"}})


async def ezdata_ws(websocket: WebSocket) -> None:
    running = services(websocket)
    await serve_ezdata_websocket(websocket, running.cloud, running.hub)


async def espai_ws(websocket: WebSocket) -> None:
    running = services(websocket)
    await serve_espai_websocket(websocket, running.espai, running.hub)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, and unexpected failures, still answer JSON (a 405 with the
    `Allow` header the router gives)."""
    if request.url.path.startswith(api_v1.PREFIX):  # devicecloud's own API: problem+json
        return router_problem(request, exc)
    if isinstance(exc, HTTPException):
        return ez_error(exc.detail, exc.status_code, exc.headers)
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return ezdata_refusal(exc)


async def drain(state: Mapping[str, Any]) -> None:
    """Before connections close: take no new ones, answer every request already received
    (`state` is the lifespan's)."""
    running = started(state)
    if running is None:
        return
    running.cloud.events.stop_streams()  # event streams end: their clients resume elsewhere
    if running.mqtt is not None:
        await running.mqtt.stop_accepting()
    await running.hub.drain()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task], timeout=1.0)


async def _listen(listener: MqttListener) -> None:
    """Start the built-in MQTT listener; a port that cannot be opened ends the start clearly."""
    for start, what, port, flag in ((listener.start, "MQTT", listener.port, "--mqtt-port"),
                                    (listener.start_tls, "MQTT over TLS", listener.tls_port,
                                     "--mqtts-port")):
        try:
            await start()
        except OSError as problem:
            reason = os.strerror(problem.errno).lower() if problem.errno else str(problem)
            raise StartupError(f"cannot listen for {what} on {listener.host}:{port}: "
                               f"{reason}; stop the other broker or pass {flag} 0 (no built-in "
                               "listener) or another port") from None


def _certificates(settings: Settings) -> Certificates | None:
    """The certificate store, if this process serves TLS: the given pair, or ACME's."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        return Certificates(settings.tls_cert, settings.tls_key)
    if settings.acme_domain:
        return Certificates(settings.tls_dir / "cert.pem", settings.tls_dir / "key.pem",
                            obtained=True)
    return None


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the store, the bus, the core and the transports; each registers its close as it
    opens, so a start that fails closes what it opened. They close in this order: the release
    sweeper, the MQTT listener, the hub, the console, resync, presence, the bus, and the store
    last (after the last write)."""
    async with AsyncExitStack() as stack:
        try:
            store = await open_store(settings)
        except (OSError, SQLAlchemyError) as problem:
            raise unusable_database(settings, problem) from None
        stack.push_async_callback(store.close)
        bus: MemoryBus | RedisBus = MemoryBus()
        if settings.bus_url:
            bus = RedisBus(settings.bus_url)
            stack.push_async_callback(bus.close)
            await bus.start()
        limits = limits_of(settings.limit, settings.bus_url)
        stack.push_async_callback(limits.close)
        cloud = DeviceCloud(store, bus, DiskBlobs(settings.files_dir), downlink_size=push_size,
                            registration=settings.registration,
                            fields_per_device=limits.device_fields.most)
        cloud.on_full = lambda device, why: limits.device_fields.count(device.id, why)
        metrics = Metrics()
        store.writer.on_commit = metrics.committed
        hub = Hub(bus, metrics, limits)
        if metrics.shared is not None:
            stack.push_async_callback(_stop, asyncio.create_task(share_metrics(metrics.shared)))
        resync = Resync(cloud, hub)
        if isinstance(bus, RedisBus):
            bus.on_gap = resync.gap
        presence = RedisPresence(hub, settings.bus_url) if settings.bus_url else LocalPresence(hub)
        stack.push_async_callback(presence.close)
        await presence.start()
        cloud.events.presence = presence
        stack.push_async_callback(_stop, asyncio.create_task(cloud.events.run()))
        stack.push_async_callback(resync.close)
        accounts = Accounts(store)
        pages = console.Console(settings, load_secret(settings.secret_path), cloud, accounts,
                                presence, hub)
        stack.push_async_callback(pages.close)
        stack.callback(hub.close)
        certificates = _certificates(settings)
        metrics.watch(Figures(hub.counts, lambda: {n: lim.refused for n, lim in limits.items()},
                              lambda: store.writer.up,
                              lambda: not isinstance(bus, RedisBus) or bus.connected,
                              lambda: certificates.expires_at if certificates else None))
        if certificates is not None:
            stack.push_async_callback(_stop, asyncio.create_task(certificates.watch()))
        mqtts = settings.mqtts_port if certificates is not None else 0
        listener: MqttListener | MqttBridge | None = None
        if settings.mqtt_broker:
            listener = MqttBridge(cloud, hub, bus, settings.mqtt_broker,
                                  mqtt_partition(settings, presence))
            stack.push_async_callback(listener.stop)
            await listener.start()
        elif settings.mqtt_port or mqtts:
            listener = MqttListener(cloud, hub, settings.host, settings.mqtt_port,
                                    settings.reuse_port,
                                    certificates.context if certificates else None, mqtts)
            stack.push_async_callback(listener.stop)
            await _listen(listener)
        espai = EspAi(store, bus, cloud.blobs, presence, settings.espai_voice_server)
        stack.push_async_callback(_stop, asyncio.create_task(sweep_releases(cloud)))
        if settings.acme_domain and certificates is not None:
            renewal = Renewal(settings, certificates)
            stack.push_async_callback(_stop, asyncio.create_task(renewal.run()))
        yield Services(settings=settings, cloud=cloud, accounts=accounts, espai=espai, bus=bus,
                       hub=hub, presence=presence, limits=limits,
                       console=pages, mqtt=listener, tls=certificates)


def create_app(settings: Settings) -> Starlette:
    """The ASGI application; its lifespan opens the services and yields them as its state."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[LifespanState]:
        async with open_services(settings) as running:
            yield {"services": running}

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *metrics_http.routes(),
        WebSocketRoute("/ws", ezdata_ws),
        *ezdata_http.routes(),
        WebSocketRoute("/connect_espai_node", espai_ws),
        *espai_http.routes(),
        *api_v1.routes(),
        *api_events.routes(),
        *openapi.routes((*espai_http.OPERATIONS, *api_v1.OPERATIONS,
                         *api_events.OPERATIONS)),
        *mqtt_auth_http.routes(settings),
        *console.routes(),
        *(acme_http.routes() if settings.acme_domain else []),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: http_error},
                     middleware=[Middleware(HttpsPages, settings=settings)] if settings.tls else [])
