"""The composition root: wires the core to its adapters and the transports to the core."""

from __future__ import annotations

import asyncio
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
from devicecloud.config import Settings
from devicecloud.core.accounts import Accounts
from devicecloud.core.ports import Store
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.ezdata_ws import serve_ezdata_websocket
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.mqtt_bridge import MqttBridge
from devicecloud.gateways.mqtt_listener import MqttListener
from devicecloud.store import migrate
from devicecloud.store.sqlite import SqliteStore
from devicecloud.web import ezdata_http, mqtt_auth_http
from devicecloud.web.responses import ez_error, json_response


def sqlite_path(database_url: str) -> Path:
    """The file of a `sqlite:///path` URL; other databases are not supported by this build."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        raise SystemExit(f"unsupported database URL: {database_url.split(':', 1)[0]}:...")
    return Path(database_url[len(prefix):])


async def open_store(settings: Settings) -> Store:
    """Migrate the configured database to the newest schema and open it."""
    url = settings.resolved_database_url
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


async def healthz(request: Request) -> Response:
    """`ok` while everything works; `degraded` while the bus is down (devices still work)."""
    bus = getattr(request.app.state, "bus", None)
    if isinstance(bus, RedisBus):
        health = bus.health()
        status = "ok" if health["connected"] else "degraded"
        return json_response({"status": status, "version": __version__, "bus": health})
    return json_response({"status": "ok", "version": __version__, "bus": {"kind": "memory"}})


async def ezdata_ws(websocket: WebSocket) -> None:
    state = websocket.app.state
    await serve_ezdata_websocket(websocket, state.cloud, state.hub)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, and unexpected failures, still answer JSON."""
    if isinstance(exc, HTTPException):
        return ez_error(exc.detail, exc.status_code)
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
        cloud = DeviceCloud(store, bus, DiskBlobs(settings.files_dir))
        hub = Hub(bus)
        listener: MqttListener | MqttBridge | None = None
        if settings.mqtt_broker:
            listener = MqttBridge(cloud, hub, bus, settings.mqtt_broker, settings.partition)
            await listener.start()
        elif settings.mqtt_port:
            listener = MqttListener(cloud, hub, settings.host, settings.mqtt_port)
            await listener.start()
        app.state.settings, app.state.cloud, app.state.hub = settings, cloud, hub
        app.state.accounts = Accounts(store)
        app.state.mqtt = listener
        try:
            yield
        finally:
            if listener is not None:
                await listener.stop()
            hub.close()
            if isinstance(bus, RedisBus):
                await bus.close()
            await store.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        WebSocketRoute("/ws", ezdata_ws),
        *ezdata_http.routes(),
        *mqtt_auth_http.routes(),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: http_error})
