"""The console's page framework: a `Visit` per request, the `page` decorator that loads the
session, asks for a log-in, reads and CSRF-checks forms and adds the security headers, and the
checks and look-ups that pages share."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from devicecloud.core.errors import DeviceCloudError, TooLarge, Unauthorized
from devicecloud.core.ids import is_token
from devicecloud.core.models import Account, Device
from devicecloud.limits import source_address
from devicecloud.web.console import csrf
from devicecloud.web.console.sessions import Session
from devicecloud.web.console.state import Console
from devicecloud.web.requests import base_url
from devicecloud.web.services import services
from devicecloud.web.uploads import read_form

HOME = "/console/devices"
LOGIN = "/console/login"
ESPAI_DEVICE_TYPE = "esp-ai"  # the type of a device the ESP-AI firmware added (/devices/add)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def console_of(connection: HTTPConnection) -> Console:
    """The console serving this request or WebSocket."""
    return services(connection).console


def group_url(device: Device) -> str:
    """The console page of a device (its group of fields)."""
    return f"{HOME}/{device.token}"


def bind_url(base_url: str, device: Device) -> str:
    """The address a device's QR code shows: opened, it binds the device."""
    return f"{base_url}/console/bind/{device.token}"


def sentence(message: str) -> str:
    """A core error message as a sentence to show."""
    text = message[:1].upper() + message[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def safe_next(raw: str) -> str:
    """Where to go after logging in: a console path of this site, never another site."""
    if raw.startswith("/console/") and raw.isprintable() and "\\" not in raw:
        return raw
    return HOME


def client_address(request: Request) -> str:
    """Who is asking, as the throttles count: the peer's address (a configured proxy's
    X-Forwarded-For is already applied by the server), an IPv6 address by its /64 network,
    which one subscriber usually has whole."""
    return source_address(request.client.host if request.client else "unknown")


def secure(console: Console, connection: HTTPConnection) -> bool:
    """Whether the console is served over https (set so, or reached so): cookies are Secure."""
    return console.settings.https or connection.url.scheme in ("https", "wss")


def same_origin(console: Console, headers: Headers) -> bool:
    """A browser's `Origin` names this site (a WebSocket handshake is not covered by SameSite)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if urlsplit(origin).netloc == headers.get("host"):
        return True
    public = urlsplit(console.settings.public_url)
    return bool(console.settings.public_url) and origin == f"{public.scheme}://{public.netloc}"


async def logged_in(console: Console, session: Session) -> Account | None:
    """The account `session` is logged in to, while its session epoch is the account's."""
    if session.account_id is None:
        return None
    return await console.accounts.for_session(session.account_id, session.epoch)


async def device_of(console: Console, token: object) -> Device | None:
    """The device with this token, whoever owns it; None if there is none."""
    if not is_token(token):
        return None
    try:
        return await console.cloud.authenticate(token)
    except Unauthorized:
        return None


async def owned_device(console: Console, account: Account | None,
                       token: object) -> Device | None:
    """The device with this token if `account` owns it; None for unknown and foreign devices
    alike, so that both answer the same 404."""
    device = await device_of(console, token)
    if device is None or account is None or device.owner_id != account.id:
        return None
    return device


@dataclass
class Visit:
    """One request to a console page: who is asking, and the form they sent."""

    request: Request
    console: Console
    session: Session
    account: Account | None
    form: FormData | None = None
    uses_espai: bool = False
    """Whether the account uses ESP-AI: the navigation shows the Agents page only then."""

    @property
    def me(self) -> Account:
        """The logged-in account (pages that need one are only reached when logged in)."""
        assert self.account is not None
        return self.account

    @property
    def base_url(self) -> str:
        """This site's address as devices and other browsers reach it."""
        return base_url(self.request)

    def text(self, key: str) -> str:
        """The form's text field `key` ("" if absent or a file)."""
        value = self.form.get(key) if self.form is not None else None
        return value if isinstance(value, str) else ""

    def file(self, key: str) -> UploadFile | None:
        """The form's file field `key` (None if absent or text)."""
        value = self.form.get(key) if self.form is not None else None
        return value if isinstance(value, UploadFile) else None

    def render(self, template: str, http_status: int = 200, /, **values: Any) -> HTMLResponse:
        """The page from `template`, with the flash message and the form's CSRF field."""
        flash, flash_is_error = self.session.take_flash()
        csrf_field = Markup('<input type="hidden" name="{}" value="{}">').format(
            csrf.FIELD, self.session.csrf)
        html = self.console.templates.get_template(template).render(
            account=self.account, uses_espai=self.uses_espai, csrf_field=csrf_field,
            flash=flash, flash_is_error=flash_is_error, **values)
        return HTMLResponse(html, http_status)

    def go(self, url: str, message: str = "", error: bool = False) -> Response:
        """A redirect to `url`, which shows `message`."""
        if message:
            self.session.say(message, error)
        return RedirectResponse(url, 303)

    async def act(self, url: str, change: Callable[[], Awaitable[str]]) -> Response:
        """Make one change; go to `url` saying what happened, or why it could not be done."""
        try:
            message = await change()
        except DeviceCloudError as problem:
            return self.go(url, sentence(str(problem)), error=True)
        return self.go(url, message)

    def not_found(self) -> HTMLResponse:
        return self.render("not_found.html", 404)

    async def owned(self) -> Device | None:
        """The visitor's device named by the URL's `{token}`, if it is theirs."""
        token = self.request.path_params.get("token")
        return await owned_device(self.console, self.account, token)


async def uses_espai(request: Request, account: Account) -> bool:
    """Whether the account has an agent or a device the ESP-AI firmware bound."""
    if await services(request).espai.agents.of(account):
        return True
    devices = await services(request).cloud.store.devices_of(account.id)
    return any(device.device_type == ESPAI_DEVICE_TYPE for device in devices)


Page = Callable[[Visit], Awaitable[Response]]


def page(login: bool = True) -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
    """A console page: loads the session, sends visitors who must log in to the login page,
    reads and CSRF-checks posted forms, then saves the session and adds security headers."""

    def wrap(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            console = console_of(request)
            session = console.cookies.load(request.cookies) or Session()
            account = await logged_in(console, session)
            if account is None and session.account_id is not None:
                session.log_out()
            visit = Visit(request, console, session, account,
                          uses_espai=account is not None and await uses_espai(request, account))
            try:
                response = await _answer(visit, handler, login)
            finally:
                if visit.form is not None:
                    await visit.form.close()
            if session.changed:
                console.cookies.store(response, session, secure(console, request))
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    return wrap


async def _answer(visit: Visit, handler: Page, login: bool) -> Response:
    """The handler's answer, unless the visitor must log in first or the form is refused."""
    request = visit.request
    if login and visit.account is None:
        if request.method != "GET":  # a form sent after the session ended: start over
            return RedirectResponse(LOGIN, 303)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{LOGIN}?next={quote(target)}", 303)
    if request.method == "POST":
        try:
            visit.form = await read_form(request, visit.console.settings.upload_limit)
        except TooLarge as problem:
            return visit.render("error.html", 413, message=sentence(str(problem)))
        except MultiPartException as problem:
            return visit.render("error.html", 400, message=sentence(problem.message))
        if not csrf.form_is_genuine(visit.session, visit.form.get(csrf.FIELD)):
            return visit.render("error.html", 403, message="This form has expired. Go back, "
                                "reload the page and try again.")
    return await handler(visit)
