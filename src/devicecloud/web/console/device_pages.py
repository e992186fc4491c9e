"""The console's device pages: an account's devices, binding one (by token, by pairing code,
by its bind link or QR code), and releasing or keeping it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from devicecloud.core.errors import Conflict, DeviceCloudError, InvalidRequest, NotFound
from devicecloud.core.ids import is_token
from devicecloud.core.pairing import normalise_pair_code
from devicecloud.web.console.pages import (
    HOME,
    Visit,
    bind_url,
    client_address,
    console_of,
    device_of,
    group_url,
    page,
    sentence,
)
from devicecloud.web.console.qr import qr_png
from devicecloud.web.console.state import (
    PAIRINGS_EVERYWHERE,
    PAIRINGS_PER_ACCOUNT,
    PAIRINGS_PER_ADDRESS,
)
from devicecloud.web.console.throttle import in_words
from devicecloud.web.requests import base_url

BOUND = "Device bound to your account."


@page()
async def devices(visit: Visit) -> Response:
    console = visit.console
    found = await console.cloud.devices_of(visit.me)
    online = await console.presence.online([device.token for device in found])
    listed = [(device, device.token in online) for device in found]
    return visit.render("devices.html", devices=listed,
                        allow_list=console.settings.registration == "allow-list")


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
