"""Console sessions in a signed cookie: who is logged in, the CSRF token, one flash message.

The cookie is signed (HMAC, itsdangerous) with the data directory's `secret.key`, so nothing is
kept on the server; it expires 14 days after it was last changed. It is HttpOnly and SameSite=Lax
always, and Secure when the console is served over https.

A logged-in cookie also carries the account's session epoch: changing the password or logging
out everywhere gives the account a new one, and every cookie with an older epoch stops working on
every process at once (each request reads the account anyway).

A second signed cookie, kept 90 days, remembers the email last logged in to from this browser, so
that the log-in throttle can tell the account's own browser from everyone else's.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

COOKIE_NAME = "devicecloud_session"
MAX_AGE_SECONDS = 14 * 24 * 3600
KNOWN_COOKIE_NAME = "devicecloud_known"
KNOWN_MAX_AGE_SECONDS = 90 * 24 * 3600


def _new_csrf() -> str:
    return secrets.token_urlsafe(32)


@dataclass(slots=True)
class Session:
    """One browser's session; `changed` says whether the cookie must be sent again."""

    csrf: str = field(default_factory=_new_csrf)
    account_id: int | None = None
    flash: str = ""
    flash_is_error: bool = False
    changed: bool = True
    epoch: str = ""

    def log_in(self, account_id: int, epoch: str) -> None:
        """Start a logged-in session with a fresh CSRF token (no fixation of the old one), valid
        while the account's session epoch is `epoch`."""
        self.account_id, self.epoch, self.csrf, self.changed = account_id, epoch, _new_csrf(), True

    def log_out(self) -> None:
        self.account_id, self.epoch, self.csrf, self.changed = None, "", _new_csrf(), True

    def say(self, message: str, error: bool = False) -> None:
        """Show `message` on the next page rendered."""
        self.flash, self.flash_is_error, self.changed = message, error, True

    def take_flash(self) -> tuple[str, bool]:
        """The message to show (empty if none) and whether it reports an error; then forget it."""
        message, error = self.flash, self.flash_is_error
        if message:
            self.flash, self.flash_is_error, self.changed = "", False, True
        return message, error


class SessionCookies:
    """Reads and writes the session cookie."""

    def __init__(self, secret: bytes) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="devicecloud.console.session")
        self._known = URLSafeTimedSerializer(secret, salt="devicecloud.console.known")

    def load(self, cookies: Mapping[str, str]) -> Session | None:
        """The session in the cookie, or None if absent, forged or expired."""
        raw = cookies.get(COOKIE_NAME)
        if not raw:
            return None
        try:
            doc: Any = self._serializer.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("c"), str):
            return None
        account, flash, epoch = doc.get("a"), doc.get("f"), doc.get("g")
        return Session(doc["c"], account if isinstance(account, int) else None,
                       flash if isinstance(flash, str) else "", doc.get("e") is True,
                       changed=False, epoch=epoch if isinstance(epoch, str) else "")

    def store(self, response: Response, session: Session, secure: bool) -> None:
        doc: dict[str, Any] = {"c": session.csrf}
        if session.account_id is not None:
            doc["a"], doc["g"] = session.account_id, session.epoch
        if session.flash:
            doc["f"], doc["e"] = session.flash, session.flash_is_error
        response.set_cookie(COOKIE_NAME, self._serializer.dumps(doc), max_age=MAX_AGE_SECONDS,
                            path="/", secure=secure, httponly=True, samesite="lax")

    def knows(self, cookies: Mapping[str, str], email: str) -> bool:
        """Whether this browser logged in to `email` before (within 90 days)."""
        raw = cookies.get(KNOWN_COOKIE_NAME)
        if not raw:
            return False
        try:
            return bool(self._known.loads(raw, max_age=KNOWN_MAX_AGE_SECONDS) == email)
        except BadSignature:
            return False

    def remember(self, response: Response, email: str, secure: bool) -> None:
        """Remember that this browser logged in to `email`."""
        response.set_cookie(KNOWN_COOKIE_NAME, self._known.dumps(email),
                            max_age=KNOWN_MAX_AGE_SECONDS, path="/console/login", secure=secure,
                            httponly=True, samesite="strict")
