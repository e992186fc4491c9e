"""The composition root: wires the core to its adapters and the transports to the core."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from devicecloud import __version__
from devicecloud.blobs.disk import DiskBlobs
from devicecloud.bus.memory import MemoryBus
from devicecloud.bus.redis import RedisBus
from devicecloud.config import Settings, load_secret
from devicecloud.core.accounts import Accounts
from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.espai import EspAi
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
from devicecloud.protocols.ezdata_mqtt import push_size
from devicecloud.store import migrate
from devicecloud.store.postgres import PostgresStore
from devicecloud.store.sqlite import SqliteStore, SqlStore
from devicecloud.web import console, espai_http, ezdata_http, mqtt_auth_http, openapi
from devicecloud.web.responses import ez_error, json_response

log = logging.getLogger(__name__)
RELEASE_SWEEP_SECONDS = 60.0
SLOW_BUS_MS = 500  # a bus round trip slower than this makes /healthz say degraded

def sqlite_path(database_url: str) -> Path:
    """The file of a `sqlite:///path` URL."""
    return Path(database_url[len("sqlite:///"):])


async def open_store(settings: Settings) -> SqlStore:
    """Migrate the configured database to the newest schema and open it."""
    url = settings.resolved_database_url
    if url.startswith(("postgresql:", "postgres:", "postgresql+")):
        await asyncio.to_thread(migrate.upgrade, url)
        return PostgresStore(url)
    if not url.startswith("sqlite:///"):
        raise SystemExit(f"unsupported database URL: {url.split(':', 1)[0]}:... "
                         "(use sqlite:///PATH or postgresql://...)")
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate.upgrade, url)
    return SqliteStore(path)


async def open_bus(settings: Settings) -> MemoryBus | RedisBus:
    """The in-process bus, or Redis when `bus_url` names one."""
    if not settings.bus_url:
        return MemoryBus()
    bus = RedisBus(settings.bus_url)
    await bus.start()
    return bus


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


async def healthz(request: Request) -> Response:
    """`ok` while everything works; `degraded` while the bus is down or slow (devices still
    work; pushes to other processes wait for it)."""
    bus = getattr(request.app.state, "bus", None)
    if isinstance(bus, RedisBus):
        health = bus.health()
        round_trip = bus.round_trip_ms
        slow = round_trip is None or round_trip > SLOW_BUS_MS
        status = "degraded" if slow or not health["connected"] else "ok"
        return json_response({"status": status, "version": __version__, "bus": health})
    return json_response({"status": "ok", "version": __version__, "bus": {"kind": "memory"}})


async def ezdata_ws(websocket: WebSocket) -> None:
    state = websocket.app.state
    await serve_ezdata_websocket(websocket, state.cloud, state.hub)


async def espai_ws(websocket: WebSocket) -> None:
    state = websocket.app.state
    await serve_espai_websocket(websocket, state.espai, state.hub)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, and unexpected failures, still answer JSON (a 405 with the
    `Allow` header the router gives)."""
    if isinstance(exc, HTTPException):
        return ez_error(exc.detail, exc.status_code, exc.headers)
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return ez_error("internal error", 500)


async def drain(app: Starlette) -> None:
    """Before connections close: take no new ones, answer every request already received."""
    listener: MqttListener | MqttBridge | None = getattr(app.state, "mqtt", None)
    if listener is not None:
        await listener.stop_accepting()
    hub: Hub | None = getattr(app.state, "hub", None)
    if hub is not None:
        await hub.drain()


def create_app(settings: Settings) -> Starlette:
    """The ASGI application; its lifespan opens the store and closes it after the last write."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings)
        bus = await open_bus(settings)
        app.state.bus = bus
        cloud = DeviceCloud(store, bus, DiskBlobs(settings.files_dir), downlink_size=push_size)
        hub = Hub(bus)
        resync = Resync(cloud, hub)
        if isinstance(bus, RedisBus):
            bus.on_gap = resync.gap
        presence = RedisPresence(hub, settings.bus_url) if settings.bus_url else LocalPresence(hub)
        await presence.start()
        app.state.presence = presence
        listener: MqttListener | MqttBridge | None = None
        if settings.mqtt_broker:
            listener = MqttBridge(cloud, hub, bus, settings.mqtt_broker,
                                  mqtt_partition(settings, presence))
            await listener.start()
        elif settings.mqtt_port:
            listener = MqttListener(cloud, hub, settings.host, settings.mqtt_port,
                                    settings.reuse_port)
            await listener.start()
        app.state.settings, app.state.cloud, app.state.hub = settings, cloud, hub
        app.state.limits = limits_of(settings.limit)
        app.state.accounts = accounts = Accounts(store)
        app.state.console = console.Console(settings, load_secret(settings.secret_path), cloud,
                                            accounts, presence, hub)
        app.state.mqtt = listener
        app.state.espai = EspAi(store, bus, cloud.blobs, cloud, presence,
                                 settings.espai_voice_server)
        sweeper = asyncio.create_task(sweep_releases(cloud))
        try:
            yield
        finally:
            sweeper.cancel()
            await asyncio.wait([sweeper], timeout=1.0)
            if listener is not None:
                await listener.stop()
            hub.close()
            await app.state.console.close()
            await resync.close()
            await presence.close()
            if isinstance(bus, RedisBus):
                await bus.close()
            await store.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        WebSocketRoute("/ws", ezdata_ws),
        *ezdata_http.routes(),
        WebSocketRoute("/connect_espai_node", espai_ws),
        *espai_http.routes(),
        *openapi.routes(espai_http.OPERATIONS),
        *mqtt_auth_http.routes(settings),
        *console.routes(),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: http_error})
