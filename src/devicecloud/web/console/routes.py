"""The console's pages, its bind links and QR codes, and the live WebSocket of a group page."""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from devicecloud.core.errors import (
    Conflict,
    DeviceCloudError,
    InvalidRequest,
    NotFound,
    TooLarge,
    Unauthorized,
)
from devicecloud.core.ids import is_token, now_ms
from devicecloud.core.models import Account, Device, Field
from devicecloud.core.pairing import normalise_pair_code
from devicecloud.web.console import csrf
from devicecloud.web.console.chart import numeric_chart
from devicecloud.web.console.forms import parse_value
from devicecloud.web.console.live import serve_live
from devicecloud.web.console.qr import qr_png
from devicecloud.web.console.rendering import STATIC, row
from devicecloud.web.console.sessions import Session
from devicecloud.web.console.state import (
    LOGINS_PER_ADDRESS,
    LOGINS_PER_EMAIL,
    LOGINS_PER_EMAIL_AND_ADDRESS,
    PAIRINGS_EVERYWHERE,
    PAIRINGS_PER_ACCOUNT,
    PAIRINGS_PER_ADDRESS,
    Console,
)
from devicecloud.web.console.throttle import Check, in_words
from devicecloud.web.uploads import read_form

HISTORY_PAGE_SIZE = 50
FIELDS_PAGE_SIZE = 100  # rows of a device page's field table
CHART_POINTS = 200
HOME = "/console/devices"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _sentence(message: str) -> str:
    """A core error message as a sentence to show."""
    text = message[:1].upper() + message[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def _group_url(device: Device) -> str:
    return f"/console/devices/{device.token}"


def _safe_next(raw: str) -> str:
    """Where to go after logging in: a console path of this site, never another site."""
    if raw.startswith("/console/") and raw.isprintable() and "\\" not in raw:
        return raw
    return HOME


def _client_address(request: Request) -> str:
    """Who is asking, as the throttles count: the peer's address (a configured proxy's
    X-Forwarded-For is already applied by the server), an IPv6 address by its /64 network,
    which one subscriber usually has whole."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _secure(console: Console, request: Request | WebSocket) -> bool:
    return console.settings.https or request.url.scheme in ("https", "wss")


def _same_origin(console: Console, headers: Headers) -> bool:
    """A browser's `Origin` names this site (a WebSocket handshake is not covered by SameSite)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if urlsplit(origin).netloc == headers.get("host"):
        return True
    public = urlsplit(console.settings.public_url)
    return bool(console.settings.public_url) and origin == f"{public.scheme}://{public.netloc}"


async def _owned(console: Console, account: Account | None, token: object) -> Device | None:
    """The device with this token if `account` owns it; None for unknown and foreign devices
    alike, so that both answer the same 404."""
    device = await _device(console, token)
    if device is None or account is None or device.owner_id != account.id:
        return None
    return device


async def _device(console: Console, token: object) -> Device | None:
    if not is_token(token):
        return None
    try:
        return await console.cloud.authenticate(token)
    except Unauthorized:
        return None


async def _status(console: Console, device: Device) -> dict[str, Any]:
    status = await console.presence.status(device.token)
    return {"online": status.online, "transports": list(status.transports),
            "lastSeen": now_ms() if status.online else device.last_seen_at}


@dataclass
class Visit:
    """One request to a console page: who is asking, and the form they sent."""

    request: Request
    console: Console
    session: Session
    account: Account | None
    form: FormData | None = None

    @property
    def me(self) -> Account:
        """The logged-in account (pages that need one are only reached when logged in)."""
        assert self.account is not None
        return self.account

    def text(self, key: str) -> str:
        value = self.form.get(key) if self.form is not None else None
        return value if isinstance(value, str) else ""

    def render(self, template: str, http_status: int = 200, /, **values: Any) -> HTMLResponse:
        flash, flash_is_error = self.session.take_flash()
        csrf_field = Markup('<input type="hidden" name="{}" value="{}">').format(
            csrf.FIELD, self.session.csrf)
        html = self.console.templates.get_template(template).render(
            account=self.account, csrf_field=csrf_field, flash=flash,
            flash_is_error=flash_is_error, **values)
        return HTMLResponse(html, http_status)

    def go(self, url: str, message: str = "", error: bool = False) -> Response:
        if message:
            self.session.say(message, error)
        return RedirectResponse(url, 303)

    async def act(self, url: str, change: Callable[[], Awaitable[str]]) -> Response:
        """Make one change; go to `url` saying what happened, or why it could not be done."""
        try:
            message = await change()
        except DeviceCloudError as problem:
            return self.go(url, _sentence(str(problem)), error=True)
        return self.go(url, message)

    def not_found(self) -> HTMLResponse:
        return self.render("not_found.html", 404)

    async def owned(self) -> Device | None:
        return await _owned(self.console, self.account, self.request.path_params.get("token"))


Page = Callable[[Visit], Awaitable[Response]]


def page(login: bool = True) -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
    """A console page: loads the session, sends visitors who must log in to the login page,
    reads and CSRF-checks posted forms, then saves the session and adds security headers."""

    def wrap(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            session = console.cookies.load(request.cookies) or Session()
            account = None
            if session.account_id is not None:
                account = await console.accounts.for_session(session.account_id, session.epoch)
                if account is None:
                    session.log_out()
            visit = Visit(request, console, session, account)
            try:
                response = await _answer(visit, handler, login)
            finally:
                if visit.form is not None:
                    await visit.form.close()
            if session.changed:
                console.cookies.store(response, session, _secure(console, request))
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    return wrap


async def _answer(visit: Visit, handler: Page, login: bool) -> Response:
    request = visit.request
    if login and visit.account is None:
        if request.method != "GET":  # a form sent after the session ended: start over
            return RedirectResponse("/console/login", 303)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?next={quote(target)}", 303)
    if request.method == "POST":
        try:
            visit.form = await read_form(request, visit.console.settings.upload_limit)
        except TooLarge as problem:
            return visit.render("error.html", 413, message=_sentence(str(problem)))
        except MultiPartException as problem:
            return visit.render("error.html", 400, message=_sentence(problem.message))
        if not csrf.form_is_genuine(visit.session, visit.form.get(csrf.FIELD)):
            return visit.render("error.html", 403, message="This form has expired. Go back, "
                                "reload the page and try again.")
    return await handler(visit)


# Accounts ---------------------------------------------------------------------------------------

async def root(request: Request) -> Response:
    return RedirectResponse("/console", 303)


@page(login=False)
async def home(visit: Visit) -> Response:
    return visit.go(HOME if visit.account else "/console/login")


@page(login=False)
async def signup(visit: Visit) -> Response:
    request, console = visit.request, visit.console
    next_url = _safe_next(visit.text("next") or request.query_params.get("next", ""))
    values = {"next": next_url, "email": visit.text("email"),
              "display_name": visit.text("display_name"), "phone": visit.text("phone")}
    if request.method == "GET":
        if visit.account:
            return visit.go(next_url)
        return visit.render("signup.html", error="", **values)
    try:
        account = await console.accounts.create(visit.text("email"), visit.text("password"),
                                                visit.text("display_name"), visit.text("phone"))
    except DeviceCloudError as problem:
        status = 409 if isinstance(problem, Conflict) else 400
        return visit.render("signup.html", status, error=_sentence(str(problem)), **values)
    visit.session.log_in(account.id, account.session_epoch)
    return visit.go(next_url, f"Welcome, {account.display_name or account.email}.")


async def _password_is_right(visit: Visit, email: str, password: str,
                             by_email: bool = True) -> Account | int:
    """The account if `password` is that of `email`, else the seconds to wait before trying
    again (0: just wrong). Failures count per email and address, per address and, unless this
    browser logged in to `email` before or `by_email` is off, per email."""
    console, address = visit.console, _client_address(visit.request)
    pair: Check = (LOGINS_PER_EMAIL_AND_ADDRESS, f"{email} {address}")
    checks = [pair, (LOGINS_PER_ADDRESS, address)]
    if by_email and not console.cookies.knows(visit.request.cookies, email):
        checks.append((LOGINS_PER_EMAIL, email))
    attempt = await console.throttle.attempt(*checks)
    if attempt.wait:
        return attempt.wait
    try:
        account = await console.accounts.authenticate(email, password)
    except Unauthorized:
        return 0
    await attempt.forgive()
    await attempt.clear(pair)
    return account


def _too_many_logins(wait: int) -> str:
    return f"Too many failed log-ins. Try again in {in_words(wait)}."


@page(login=False)
async def login(visit: Visit) -> Response:
    request, console = visit.request, visit.console
    next_url = _safe_next(visit.text("next") or request.query_params.get("next", ""))
    email = visit.text("email").strip().lower()
    if request.method == "GET":
        if visit.account:
            return visit.go(next_url)
        return visit.render("login.html", next=next_url, email="", error="")
    found = await _password_is_right(visit, email, visit.text("password"))
    if not isinstance(found, Account):
        return visit.render("login.html", 429 if found else 401, next=next_url, email=email,
                            error=_too_many_logins(found) if found else "Wrong email or password.")
    visit.session.log_in(found.id, found.session_epoch)
    response = visit.go(next_url)
    console.cookies.remember(response, email, _secure(console, request))
    return response


@page(login=False)
async def logout(visit: Visit) -> Response:
    visit.session.log_out()
    return visit.go("/console/login", "You are logged out.")


@page()
async def logout_everywhere(visit: Visit) -> Response:
    """End every session of the account, on every browser and process, this one included."""
    await visit.console.accounts.end_sessions(visit.me)
    visit.session.log_out()
    return visit.go("/console/login", "You are logged out everywhere.")


@page()
async def change_password(visit: Visit) -> Response:
    """A new password, given the current one; every other session of the account ends."""
    here, accounts = "/console/account", visit.console.accounts
    new = visit.text("new_password")
    if new != visit.text("new_password_again"):
        return visit.go(here, "The two new passwords differ.", error=True)
    found = await _password_is_right(visit, visit.me.email, visit.text("password"),
                                     by_email=False)  # the session shows whose browser it is
    if not isinstance(found, Account):
        return visit.go(here, _too_many_logins(found) if found else
                        "The current password is wrong.", error=True)
    try:
        account = await accounts.change_password(found, new)
    except InvalidRequest as problem:
        return visit.go(here, _sentence(str(problem)), error=True)
    visit.session.log_in(account.id, account.session_epoch)
    return visit.go(here, "Password changed; every other session is logged out.")


@page()
async def account_page(visit: Visit) -> Response:
    if visit.request.method == "POST":
        async def save() -> str:
            await visit.console.accounts.update_profile(visit.me, visit.text("display_name"),
                                                        visit.text("phone"))
            return "Profile saved."
        return await visit.act("/console/account", save)
    return visit.render("account.html")


@page()
async def new_api_key(visit: Visit) -> Response:
    await visit.console.accounts.regenerate_api_key(visit.me)
    return visit.go("/console/account", "New open_api_key made; the old one no longer works.")


# Devices and binding ------------------------------------------------------------------------------

@page()
async def devices(visit: Visit) -> Response:
    console = visit.console
    found = await console.cloud.devices_of(visit.me)
    online = await console.presence.online([device.token for device in found])
    listed = [(device, device.token in online) for device in found]
    return visit.render("devices.html", devices=listed)


@page()
async def add_by_token(visit: Visit) -> Response:
    token = visit.text("token").strip().lower()
    if not is_token(token):
        return visit.go(HOME, "A device token is 32 hexadecimal characters.", error=True)
    device = await _device(visit.console, token)
    if device is None:
        return visit.go(HOME, "No device has this token. Has it registered yet?", error=True)
    try:
        await visit.console.cloud.bind(device, visit.me)
    except Conflict as problem:
        return visit.go(HOME, _sentence(str(problem)), error=True)
    return visit.go(_group_url(device), "Device bound to your account.")


@page()
async def add_by_pair_code(visit: Visit) -> Response:
    """Bind the device showing this code. Wrong codes count per account, per address and across
    the service (docs/console.md: the odds of guessing one)."""
    console = visit.console
    try:
        code = normalise_pair_code(visit.text("code"))
    except InvalidRequest as problem:
        return visit.go(HOME, _sentence(str(problem)), error=True)
    attempt = await console.throttle.attempt(
        (PAIRINGS_PER_ACCOUNT, str(visit.me.id)),
        (PAIRINGS_PER_ADDRESS, _client_address(visit.request)), (PAIRINGS_EVERYWHERE, "all"))
    if attempt.wait:
        return visit.go(HOME, "Too many wrong pairing codes. Try again in "
                              f"{in_words(attempt.wait)}.", error=True)
    try:
        device = await console.cloud.bind_by_pair_code(code, visit.me)
    except NotFound as problem:
        return visit.go(HOME, _sentence(str(problem)), error=True)  # stays counted
    except DeviceCloudError as problem:
        await attempt.forgive()
        return visit.go(HOME, _sentence(str(problem)), error=True)
    await attempt.forgive()
    return visit.go(_group_url(device), "Device paired and bound to your account.")


@page()
async def bind_link(visit: Visit) -> Response:
    """The bind URL of a device's QR code. Opened directly (scanned, typed: `Sec-Fetch-Site:
    none`) it binds at once; reached from a link or a redirect it asks to confirm first, so that
    another site cannot bind a device to the visitor's account behind their back."""
    console = visit.console
    device = await _device(console, visit.request.path_params["token"])
    if device is None:
        return visit.not_found()
    if device.owner_id == visit.me.id:
        return visit.go(_group_url(device), "This device is already yours.")
    direct = visit.request.headers.get("sec-fetch-site") == "none"
    if visit.request.method == "GET" and not direct:
        return visit.render("bind.html", device=device, error="")
    try:
        await console.cloud.bind(device, visit.me)
    except Conflict as problem:
        return visit.render("bind.html", 409, device=device, error=_sentence(str(problem)))
    return visit.go(_group_url(device), "Device bound to your account.")


async def bind_qr(request: Request) -> Response:
    """A PNG of the device's bind URL, for the console and for the device's own screen."""
    console: Console = request.app.state.console
    device = await _device(console, request.path_params["token"])
    if device is None:
        return PlainTextResponse("no such device", 404)
    base = console.settings.base_url(str(request.base_url))
    return Response(qr_png(f"{base}/console/bind/{device.token}"), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@page()
async def release(visit: Visit) -> Response:
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    if not await visit.console.cloud.release_owner(device, visit.me.id):
        return visit.not_found()
    return visit.go(HOME, "Device released; its data stays with the device.")


@page()
async def keep(visit: Visit) -> Response:
    """The owner refuses a release asked for by the device's token."""
    device = await visit.owned()
    if device is None or not await visit.console.cloud.refuse_release(device, visit.me.id):
        return visit.not_found()
    return visit.go(_group_url(device), "The device stays yours; release requests by its token "
                    "are refused for 30 days.")


# A group: the device's fields ---------------------------------------------------------------------

@page()
async def group(visit: Visit) -> Response:
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    console = visit.console
    fields = await console.cloud.list_fields(device)
    shown, page_number, pages = _fields_page(fields, visit.request.query_params.get("page", ""))
    base = console.settings.base_url(str(visit.request.base_url))
    return visit.render("group.html", device=device, status=await _status(console, device),
                        rows=[row(field.record()) for field in shown], total=len(fields),
                        page=page_number, pages=pages,
                        bind_url=f"{base}/console/bind/{device.token}")


def _page_number(number: str) -> int:
    """A page number from the query (1 for anything else)."""
    return int(number) if number.isascii() and number.isdigit() and (
        0 < int(number) < 10**6) else 1


def _fields_page(fields: list[Field], number: str) -> tuple[list[Field], int, int]:
    """The fields on page `number` of the field table, that page's number and the page count."""
    pages = max(1, math.ceil(len(fields) / FIELDS_PAGE_SIZE))
    page_number = min(_page_number(number), pages)
    start = (page_number - 1) * FIELDS_PAGE_SIZE
    return fields[start:start + FIELDS_PAGE_SIZE], page_number, pages


async def _write_field(visit: Visit, device: Device, adding: bool) -> Field:
    """Add or change the field the form describes, as the user; the hub pushes the change."""
    cloud = visit.console.cloud
    name, kind = visit.text("name"), visit.text("type")
    if kind == "file":
        upload = visit.form.get("file") if visit.form is not None else None
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidRequest("choose a file to upload")
        base = visit.console.settings.base_url(str(visit.request.base_url))
        return await cloud.store_file(device, name, upload.filename, await upload.read(), base,
                                      source="user")
    value, data_type = parse_value(kind, visit.text("value"))
    if adding:
        return await cloud.add_field(device, name, value, data_type=data_type, source="user")
    return await cloud.modify_field(device, name, value, data_type=data_type, source="user")


async def _on_field(visit: Visit, change: Callable[[Device], Awaitable[str]]) -> Response:
    """A change to one of the visitor's devices, back on its page."""
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    return await visit.act(_group_url(device), lambda: change(device))


@page()
async def add_field(visit: Visit) -> Response:
    async def change(device: Device) -> str:
        return f"Added {(await _write_field(visit, device, adding=True)).name}."
    return await _on_field(visit, change)


@page()
async def edit_field(visit: Visit) -> Response:
    async def change(device: Device) -> str:
        return f"Saved {(await _write_field(visit, device, adding=False)).name}."
    return await _on_field(visit, change)


@page()
async def delete_field(visit: Visit) -> Response:
    async def change(device: Device) -> str:
        field = await visit.console.cloud.delete_field(device, visit.text("name"), source="user")
        return f"Deleted {field.name}."
    return await _on_field(visit, change)


@page()
async def history(visit: Visit) -> Response:
    device = await visit.owned()
    if device is None:
        return visit.not_found()
    cloud = visit.console.cloud
    query = visit.request.query_params
    try:
        field = await cloud.get_field(device, query.get("name", ""))
    except DeviceCloudError:
        return visit.not_found()
    page_number = _page_number(query.get("page", "1"))
    rows, total = await cloud.history(field, page_number, HISTORY_PAGE_SIZE)
    recent, _ = await cloud.history(field, 1, CHART_POINTS)
    return visit.render("history.html", device=device, field=field, rows=rows, total=total,
                        page=page_number, pages=max(1, math.ceil(total / HISTORY_PAGE_SIZE)),
                        chart=numeric_chart(recent))


async def live(websocket: WebSocket) -> None:
    """`/console/live/{token}`: the group page's live feed, for the device's owner only."""
    console: Console = websocket.app.state.console
    session = console.cookies.load(websocket.cookies)
    account = None
    if session is not None and session.account_id is not None:
        account = await console.accounts.for_session(session.account_id, session.epoch)
    device = await _owned(console, account, websocket.path_params["token"])
    if account is None or device is None or not _same_origin(console, websocket.headers):
        await websocket.close(code=4404)  # before accepting: the handshake is refused
        return
    token, cloud = device.token, console.cloud
    page = websocket.query_params.get("page", "")

    async def status() -> dict[str, Any] | None:
        now = await _owned(console, account, token)
        return None if now is None else await _status(console, now)

    async def snapshot() -> dict[str, Any]:  # of the fields on the page's own page
        fields, _, _ = _fields_page(await cloud.list_fields(device), page)
        return {"type": "snapshot", "records": [field.record() for field in fields],
                "status": await status()}

    with console.feeds.watch(token) as watcher:
        await websocket.accept()
        await serve_live(websocket, watcher, account.id, snapshot, status)


def routes() -> list[BaseRoute]:
    any_method = ["GET", "POST"]
    return [
        Route("/", root, methods=["GET"]),
        Route("/console", home, methods=["GET"]),
        Route("/console/signup", signup, methods=any_method),
        Route("/console/login", login, methods=any_method),
        Route("/console/logout", logout, methods=["POST"]),
        Route("/console/account", account_page, methods=any_method),
        Route("/console/account/api-key", new_api_key, methods=["POST"]),
        Route("/console/account/password", change_password, methods=["POST"]),
        Route("/console/account/logout-everywhere", logout_everywhere, methods=["POST"]),
        Route("/console/devices", devices, methods=["GET"]),
        Route("/console/devices/add", add_by_token, methods=["POST"]),
        Route("/console/devices/pair", add_by_pair_code, methods=["POST"]),
        Route("/console/devices/{token}", group, methods=["GET"]),
        Route("/console/devices/{token}/fields/add", add_field, methods=["POST"]),
        Route("/console/devices/{token}/fields/edit", edit_field, methods=["POST"]),
        Route("/console/devices/{token}/fields/delete", delete_field, methods=["POST"]),
        Route("/console/devices/{token}/history", history, methods=["GET"]),
        Route("/console/devices/{token}/release", release, methods=["POST"]),
        Route("/console/devices/{token}/keep", keep, methods=["POST"]),
        Route("/console/bind/{token}", bind_link, methods=any_method),
        Route("/console/bind/{token}/qr.png", bind_qr, methods=["GET"]),
        WebSocketRoute("/console/live/{token}", live),
        Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
    ]
