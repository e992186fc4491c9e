"""HTTPS for the console's pages: `--http-redirect` sends a browser asking for a page over plain
HTTP to the HTTPS port, and pages served over TLS carry HSTS. Device calls (the API, /ws, file
downloads, the ACME challenge) are never redirected: firmwares do not follow redirects."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devicecloud.config import Settings

HSTS = (b"strict-transport-security", b"max-age=31536000")
PAGE_PREFIXES = ("/console", "/docs")


def is_page(path: str) -> bool:
    """Whether `path` is one of the console's pages (or the API's documentation)."""
    return path == "/" or path.startswith(PAGE_PREFIXES)


def https_location(settings: Settings, scope: Scope, host_header: str) -> str:
    """Where the same page is over HTTPS: under an https `public_url`, else on this host's
    HTTPS port."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    target = raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    if settings.https:
        return settings.public_url + target
    host = host_header.strip() or "localhost"
    if host.startswith("["):  # [IPv6]:port
        host = host[:host.index("]") + 1]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    return f"https://{host}{port}{target}"


class HttpsPages:
    """ASGI middleware: redirects plain-HTTP page requests with 308 (with `--http-redirect`),
    and adds `Strict-Transport-Security` to pages served over TLS."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_page(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["scheme"] == "https":
            await self.app(scope, receive, self._with_hsts(send))
            return
        headers = Headers(scope=scope)
        if (self.settings.http_redirect and scope["method"] in ("GET", "HEAD")
                and "text/html" in headers.get("accept", "")):
            location = https_location(self.settings, scope, headers.get("host", ""))
            await RedirectResponse(location, status_code=308)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _with_hsts(send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), HSTS]
            await send(message)
        return sending
