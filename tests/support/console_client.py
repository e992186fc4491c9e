"""A browser-like HTTP client of the web console, for tests that sign up, bind and edit."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any

import httpx

from support.server import Server

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_API_KEY = re.compile(r'<code id="api-key" class="secret">([0-9a-f]{32})</code>')


class ConsoleUser:
    """A browser-like HTTP client: keeps the session cookie and the page's CSRF token."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url)
        self.csrf = ""
        self.email = ""

    @classmethod
    def sign_up(cls, server: Server, name: str = "") -> ConsoleUser:
        user = cls(server)
        user.email = f"{secrets.token_hex(5)}@example.com"
        user.get("/console/signup")
        reply = user.post("/console/signup", email=user.email, password=PASSWORD,
                          display_name=name, phone="")
        assert reply.status_code == 303, reply.text
        user.get("/console/devices")
        return user

    def get(self, path: str, **options: Any) -> httpx.Response:
        reply = self.http.get(path, **options)
        found = _CSRF.search(reply.text)
        if found:
            self.csrf = found.group(1)
        return reply

    def post(self, path: str, files: Any = None, **form: str) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf, **form}, files=files)

    def flash(self, reply: httpx.Response) -> str:
        """The message shown on the page a form's answer leads to."""
        assert reply.status_code == 303, reply.text
        page = self.get(reply.headers["location"]).text
        found = re.search(r'<p class="flash[^"]*" role="(?:status|alert)">([^<]*)</p>', page)
        return html.unescape(found.group(1)) if found else ""

    def bind(self, token: str) -> httpx.Response:
        return self.post("/console/devices/add", token=token)

    def api_key(self) -> str:
        """The account's open_api_key, as its account page shows it."""
        page = self.get("/console/account").text
        found = _API_KEY.search(page)
        assert found, page
        return found.group(1)

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())
