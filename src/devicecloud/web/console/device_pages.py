"""The console's device pages: an account's devices (a live list), binding one (by token, by
pairing code, by its bind link or QR code), releasing or keeping it, and what a device needs
to reach this server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from devicecloud.addresses import is_loopback_url
from devicecloud.core.device_profiles import MAX_PAGE, DeviceProfile, ProfileChanges, ProfileQuery
from devicecloud.core.errors import Conflict, DeviceCloudError, InvalidRequest, NotFound
from devicecloud.core.ids import is_token, now_ms
from devicecloud.core.models import Account, Device, Field
from devicecloud.core.pairing import normalise_pair_code
from devicecloud.web.console.forms import shown
from devicecloud.web.console.live import serve_fleet
from devicecloud.web.console.pages import (
    HOME,
    Visit,
    bind_url,
    client_address,
    console_of,
    device_of,
    group_url,
    logged_in,
    page,
    same_origin,
    sentence,
)
from devicecloud.web.console.qr import qr_png
from devicecloud.web.console.rendering import mac_text
from devicecloud.web.console.state import (
    PAIRINGS_EVERYWHERE,
    PAIRINGS_PER_ACCOUNT,
    PAIRINGS_PER_ADDRESS,
    Console,
)
from devicecloud.web.console.throttle import in_words
from devicecloud.web.requests import base_url

BOUND = "Device bound to your account."
LIST_VALUES = 3  # the newest fields a device's row of the list shows
VALUE_CHARS = 40  # of each, at most
WATCHED_DEVICES = 1000  # the list is live for an account's first this many devices


def device_status(device: Device, online: bool) -> dict[str, Any]:
    """What the device list and a device's page say of its status."""
    return {"online": online, "lastSeen": now_ms() if online else device.last_seen_at}


def clipped(value: Any) -> str:
    text = shown(value)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 1] + "…"


def newest_values(fields: list[Field]) -> list[tuple[str, str]]:
    """The names and (clipped) values of the fields a device changed last."""
    newest = sorted(fields, key=lambda field: field.updated_at, reverse=True)[:LIST_VALUES]
    return [(field.name, clipped(field.value)) for field in newest]


@dataclass(frozen=True, slots=True)
class Listed:
    """A row of the device list."""

    device: Device
    label: str  # its name, or its MAC
    tags: list[str]
    online: bool
    seen: int | None  # now, for a device online
    values: list[tuple[str, str]]


def label_of(device: Device, profile: DeviceProfile | None) -> str:
    """What the console calls a device: the name its owner gave it, or its MAC."""
    return profile.name if profile is not None and profile.name else mac_text(device.mac)


@page()
async def devices(visit: Visit) -> Response:
    console = visit.console
    found = await console.cloud.devices_of(visit.me)
    online = await console.presence.online([device.token for device in found])
    profiles = {profile.device.id: profile for profile in await console.cloud.profiles.page(
        ProfileQuery(visit.me.id, MAX_PAGE))}
    listed = [Listed(device, label_of(device, profiles.get(device.id)),
                     profiles[device.id].tags if device.id in profiles else [],
                     device.token in online,
                     device_status(device, device.token in online)["lastSeen"],
                     newest_values(await console.cloud.list_fields(device)))
              for device in found]
    return visit.render("devices.html", devices=listed,
                        allow_list=console.settings.registration == "allow-list",
                        connect=connect_info(console, visit.base_url))


async def live_account(websocket: WebSocket) -> Account | None:
    """The account of a console WebSocket's session, if it is logged in and the handshake comes
    from this site; None otherwise (then refuse the handshake)."""
    console = console_of(websocket)
    session = console.cookies.load(websocket.cookies)
    account = None if session is None else await logged_in(console, session)
    return account if account is not None and same_origin(console, websocket.headers) else None


async def fleet(websocket: WebSocket) -> None:
    """`/console/live`: the device list's live feed, of the visitor's own devices."""
    console = console_of(websocket)
    account = await live_account(websocket)
    if account is None:
        await websocket.close(code=4404)
        return
    me = account
    tokens = [device.token for device in await console.cloud.devices_of(me)][:WATCHED_DEVICES]

    async def statuses() -> dict[str, dict[str, Any]]:
        mine = [device for device in await console.cloud.devices_of(me)
                if device.token in watched]
        online = await console.presence.online([device.token for device in mine])
        return {device.token: device_status(device, device.token in online) for device in mine}

    async def status_of(token: str) -> dict[str, Any]:
        device = await device_of(console, token)
        status = await console.presence.status(token)
        return device_status(device, status.online) if device is not None else {}

    watched = set(tokens)
    with console.feeds.watch_all(tokens) as watcher:
        await websocket.accept()
        await serve_fleet(websocket, watcher, me.id, statuses, status_of)


@dataclass(frozen=True, slots=True)
class Connect:
    """What a device needs to reach this server, for the "Connect a device" card."""

    http: str  # the base of EzData's HTTP API
    websocket: str
    mqtt: str  # host:port, or a sentence when MQTT is elsewhere or off
    mqtts: str  # host:port of MQTT over TLS, or ""
    loopback: bool  # the address is this machine's only: no device elsewhere reaches it
    public_url_set: bool


def connect_info(console: Console, request_base: str) -> Connect:
    settings = console.settings
    base = settings.base_url(request_base)
    host = urlsplit(base).hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    if settings.mqtt_broker:
        mqtt = "this server's MQTT broker (ask its administrator for the address)"
    elif settings.mqtt_port:
        mqtt = f"{host}:{settings.mqtt_port}"
    else:
        mqtt = "off on this server"
    mqtts = f"{host}:{settings.mqtts_port}" if settings.tls and not settings.mqtt_broker else ""
    scheme = "wss" if base.startswith("https://") else "ws"
    return Connect(base, f"{scheme}://{urlsplit(base).netloc}/ws", mqtt, mqtts,
                   is_loopback_url(base), bool(settings.public_url))


@page()
async def delete(visit: Visit) -> Response:
    """Delete one's device with its data (asked to confirm first, see _confirm.html)."""
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    try:
        await visit.console.cloud.delete_device(device, visit.me)
    except DeviceCloudError as problem:
        return visit.go(HOME, sentence(str(problem)), error=True)
    return visit.go(HOME, f"{mac_text(device.mac)} is deleted, with its data.")


@page()
async def describe(visit: Visit) -> Response:
    """Name, describe and tag one's device (tags comma-separated)."""
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    profiles = visit.console.cloud.profiles
    tags = [tag for tag in visit.text("tags").split(",") if tag.strip()]
    try:
        await profiles.change(visit.me, await profiles.owned_by_device(visit.me, device),
                              ProfileChanges(visit.text("name"), visit.text("description"), tags))
    except DeviceCloudError as problem:
        return visit.go(group_url(device), sentence(str(problem)), error=True)
    return visit.go(group_url(device), "Saved.")


@page()
async def add_by_mac(visit: Visit) -> Response:
    """Put a MAC on the allow-list for this account (`--registration allow-list`): the device
    may then register, and is this account's when it does."""
    if visit.console.settings.registration != "allow-list":
        return visit.go(HOME, "Devices register by themselves on this server: bind them with "
                              "their token or pairing code.", error=True)
    try:
        device = await visit.console.cloud.allow_mac(visit.text("mac"), visit.me)
    except DeviceCloudError as problem:
        return visit.go(HOME, sentence(str(problem)), error=True)
    return visit.go(group_url(device), f"{device.mac} may register now, and is yours when it "
                                       "does.")


@page()
async def add_by_token(visit: Visit) -> Response:
    token = visit.text("token").strip().lower()
    if not is_token(token):
        return visit.go(HOME, "A device token is 32 hexadecimal characters.", error=True)
    device = await device_of(visit.console, token)
    if device is None:
        return visit.go(HOME, "No device has this token. Has it registered yet?", error=True)
    try:
        await visit.console.cloud.bind(device, visit.me)
    except Conflict as problem:
        return visit.go(HOME, sentence(str(problem)), error=True)
    return visit.go(group_url(device), BOUND)


@page()
async def add_by_pair_code(visit: Visit) -> Response:
    """Bind the device showing this code. Wrong codes count per account, per address and across
    the service (docs/console.md: the odds of guessing one)."""
    console = visit.console
    try:
        code = normalise_pair_code(visit.text("code"))
    except InvalidRequest as problem:
        return visit.go(HOME, sentence(str(problem)), error=True)
    attempt = await console.throttle.attempt(
        (PAIRINGS_PER_ACCOUNT, str(visit.me.id)),
        (PAIRINGS_PER_ADDRESS, client_address(visit.request)), (PAIRINGS_EVERYWHERE, "all"))
    if attempt.wait:
        return visit.go(HOME, "Too many wrong pairing codes. Try again in "
                              f"{in_words(attempt.wait)}.", error=True)
    try:
        device = await console.cloud.bind_by_pair_code(code, visit.me)
    except NotFound as problem:
        return visit.go(HOME, sentence(str(problem)), error=True)  # stays counted
    except DeviceCloudError as problem:
        await attempt.forgive()
        return visit.go(HOME, sentence(str(problem)), error=True)
    await attempt.forgive()
    return visit.go(group_url(device), "Device paired and bound to your account.")


@page()
async def bind_link(visit: Visit) -> Response:
    """The bind URL of a device's QR code. Opened directly (scanned, typed: `Sec-Fetch-Site:
    none`) it binds at once; reached from a link or a redirect it asks to confirm first, so that
    another site cannot bind a device to the visitor's account behind their back."""
    console = visit.console
    device = await device_of(console, visit.request.path_params["token"])
    if device is None:
        return visit.not_found()
    if device.owner_id == visit.me.id:
        return visit.go(group_url(device), "This device is already yours.")
    direct = visit.request.headers.get("sec-fetch-site") == "none"
    if visit.request.method == "GET" and not direct:
        return visit.render("bind.html", device=device, error="")
    try:
        await console.cloud.bind(device, visit.me)
    except Conflict as problem:
        return visit.render("bind.html", 409, device=device, error=sentence(str(problem)))
    return visit.go(group_url(device), BOUND)


async def bind_qr(request: Request) -> Response:
    """A PNG of the device's bind URL, for the console and for the device's own screen."""
    console = console_of(request)
    device = await device_of(console, request.path_params["token"])
    if device is None:
        return PlainTextResponse("no such device", 404)
    return Response(qr_png(bind_url(base_url(request), device)), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@page()
async def release(visit: Visit) -> Response:
    device = await visit.owned()
    if device is None or not await visit.console.cloud.release_owner(device, visit.me.id):
        return visit.not_found()
    return visit.go(HOME, "Device released; its data stays with the device.")


@page()
async def keep(visit: Visit) -> Response:
    """The owner refuses a release asked for by the device's token."""
    device = await visit.owned()
    if device is None or not await visit.console.cloud.refuse_release(device, visit.me.id):
        return visit.not_found()
    return visit.go(group_url(device), "The device stays yours; release requests by its token "
                    "are refused for 30 days.")
