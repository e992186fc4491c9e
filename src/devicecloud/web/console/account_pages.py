"""The console's account pages: signing up, logging in and out, the password, the profile and
the open_api_key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from devicecloud.core.errors import Conflict, DeviceCloudError, InvalidRequest, Unauthorized
from devicecloud.core.models import Account
from devicecloud.web.console.pages import (
    HOME,
    LOGIN,
    Visit,
    client_address,
    page,
    safe_next,
    secure,
    sentence,
)
from devicecloud.web.console.state import (
    LOGINS_PER_EMAIL,
    LOGINS_PER_EMAIL_AND_ADDRESS,
)
from devicecloud.web.console.throttle import Check, in_words

ACCOUNT = "/console/account"


async def root(request: Request) -> Response:
    return RedirectResponse("/console", 303)


@page(login=False)
async def home(visit: Visit) -> Response:
    return visit.go(HOME if visit.account else LOGIN)


@page(login=False)
async def signup(visit: Visit) -> Response:
    request, console = visit.request, visit.console
    next_url = safe_next(visit.text("next") or request.query_params.get("next", ""))
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
        return visit.render("signup.html", status, error=sentence(str(problem)), **values)
    visit.session.log_in(account.id, account.session_epoch)
    return visit.go(next_url, f"Welcome, {account.display_name or account.email}.")


async def _password_is_right(visit: Visit, email: str, password: str,
                             by_email: bool = True) -> Account | int:
    """The account if `password` is that of `email`, else the seconds to wait before trying
    again (0: just wrong). Failures count per email and address, per address and, unless this
    browser logged in to `email` before or `by_email` is off, per email."""
    console, address = visit.console, client_address(visit.request)
    pair: Check = (LOGINS_PER_EMAIL_AND_ADDRESS, f"{email} {address}")
    checks = [pair]
    if console.logins_per_address is not None:  # `--limit ip.logins`
        checks.append((console.logins_per_address, address))
    if by_email and not console.cookies.knows(visit.request.cookies, email):
        checks.append((LOGINS_PER_EMAIL, email))
    attempt = await console.throttle.attempt(*checks)
    if attempt.wait:  # every refused log-in counts under `ip.logins` (the metric, the log)
        console.hub.limits.ip_logins.count(address, _too_many_logins(attempt.wait))
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
    next_url = safe_next(visit.text("next") or request.query_params.get("next", ""))
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
    console.cookies.remember(response, email, secure(console, request))
    return response


@page(login=False)
async def logout(visit: Visit) -> Response:
    visit.session.log_out()
    return visit.go(LOGIN, "You are logged out.")


@page()
async def logout_everywhere(visit: Visit) -> Response:
    """End every session of the account, on every browser and process, this one included."""
    await visit.console.accounts.end_sessions(visit.me)
    visit.session.log_out()
    return visit.go(LOGIN, "You are logged out everywhere.")


@page()
async def change_password(visit: Visit) -> Response:
    """A new password, given the current one; every other session of the account ends."""
    new = visit.text("new_password")
    if new != visit.text("new_password_again"):
        return visit.go(ACCOUNT, "The two new passwords differ.", error=True)
    found = await _password_is_right(visit, visit.me.email, visit.text("password"),
                                     by_email=False)  # the session shows whose browser it is
    if not isinstance(found, Account):
        return visit.go(ACCOUNT, _too_many_logins(found) if found else
                        "The current password is wrong.", error=True)
    try:
        account = await visit.console.accounts.change_password(found, new)
    except InvalidRequest as problem:
        return visit.go(ACCOUNT, sentence(str(problem)), error=True)
    visit.session.log_in(account.id, account.session_epoch)
    return visit.go(ACCOUNT, "Password changed; every other session is logged out.")


@page()
async def account_page(visit: Visit) -> Response:
    if visit.request.method == "POST":
        async def save() -> str:
            await visit.console.accounts.update_profile(visit.me, visit.text("display_name"),
                                                        visit.text("phone"))
            return "Profile saved."
        return await visit.act(ACCOUNT, save)
    return visit.render("account.html")


@page()
async def new_api_key(visit: Visit) -> Response:
    await visit.console.accounts.regenerate_api_key(visit.me)
    return visit.go(ACCOUNT, "New open_api_key made; the old one no longer works.")
