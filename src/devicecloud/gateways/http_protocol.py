"""uvicorn's httptools protocol with a deadline and a size limit for each request's headers, and
the limits on connections per address (`ip.connects`, `ip.connections`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import orjson
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from devicecloud.gateways.ws_protocol import BoundedWebSocketProtocol
from devicecloud.limits import Limits, source_address

# A connection whose next request's headers are not complete this long after it opened, or
# after its last response, is closed: a peer that sends nothing, or trickles header bytes
# (slowloris), holds a file descriptor no longer than this.
HEADER_TIMEOUT = 10.0
# Headers larger than this are refused (431): the parser itself keeps any amount.
HEADER_LIMIT = 64 * 1024


_closing: set[asyncio.Future[None]] = set()  # uncounting connections in the shared counts
_trusted: dict[str, _TrustedHosts] = {}


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Times out and bounds the headers of every request; idle keep-alive connections are
    closed by uvicorn's own `timeout_keep_alive`.

    A new connection counts under `ip.connects` and `ip.connections` by its peer's address (a
    configured proxy's connections are the proxy's: not counted). While the shared counts are
    asked the connection reads nothing; a refused one answers its first request 429 with
    `Retry-After` and a problem body, then closes (a WebSocket upgrade too: its handshake fails
    with that answer)."""

    header_timer: asyncio.TimerHandle | None = None
    header_bytes = 0  # received since the timer was armed
    limits: Limits | None = None
    limit_address = ""
    counted = False  # under ip.connections: uncount when the connection ends
    refusal: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()
        self._admit()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._uncount()
        super().connection_lost(exc)

    def _admit(self) -> None:
        running = self.app_state.get("services")
        limits = getattr(running, "limits", None)
        if not isinstance(limits, Limits) or self.client is None:
            return
        proxies = running.settings.trusted_proxies  # type: ignore[union-attr]
        if proxies:
            trusted = _trusted.get(proxies) or _trusted.setdefault(proxies, _TrustedHosts(proxies))
            if self.client[0] in trusted:
                return
        self.limits, self.limit_address = limits, source_address(self.client[0])
        verdict = limits.admit_now(self.limit_address)
        if verdict is not None:
            self._admitted(verdict)
            return
        self.transport.pause_reading()
        asking = self.loop.create_task(limits.admit(self.limit_address))
        asking.add_done_callback(self._asked)

    def _asked(self, asking: asyncio.Task[str | float]) -> None:
        try:
            verdict = asking.result()
        except Exception:  # counted as admitted rather than refusing on a failure of ours
            verdict = 0.0
        self._admitted(verdict)
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _admitted(self, verdict: str | float) -> None:
        assert self.limits is not None
        if verdict:
            self.refusal = self.limits.connect_refusal(verdict)
            return
        self.counted = True
        if self.transport.is_closing():  # it went meanwhile
            self._uncount()

    def _uncount(self) -> None:
        if self.counted and self.limits is not None:
            self.counted = False
            closing: Awaitable[None] | None = self.limits.ip_connections.close(self.limit_address)
            if closing is not None:
                task = asyncio.ensure_future(closing)
                _closing.add(task)
                task.add_done_callback(_closing.discard)

    def handle_websocket_upgrade(self) -> None:
        """The WebSocket protocol takes the connection over: it uncounts it when it ends."""
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if self.counted and isinstance(protocol, BoundedWebSocketProtocol):
            self.counted = False
            protocol.on_lost = self._lost_socket

    def _lost_socket(self) -> None:
        self.counted = True
        self._uncount()

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            message, retry_after = self.refusal
            self._refuse(429, message, retry_after)
            return
        waiting = self.header_timer is not None
        if waiting:
            self.header_bytes += len(data)
        super().data_received(data)
        # Still waiting after the parser saw it all: every byte counted belongs to headers.
        if waiting and self.header_timer is not None and self.header_bytes > HEADER_LIMIT \
                and not self.transport.is_closing():
            self._refuse(431, f"request headers larger than {HEADER_LIMIT} bytes")

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now: the next request starts anew
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self.header_bytes = 0
        self.header_timer = self.loop.call_later(HEADER_TIMEOUT, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        if self.header_bytes:
            self._refuse(408, f"request headers not complete within {HEADER_TIMEOUT:g} s")
        else:  # nothing asked, nothing to answer
            self.transport.close()

    def _refuse(self, status: int, message: str, retry_after: int | None = None) -> None:
        """Answer `status` with `message` and close the connection; with `retry_after`, as a
        problem body (a limit's refusal: 429 Too many requests)."""
        self._cancel_header_timer()
        body = message.encode()
        kind = b"text/plain; charset=utf-8"
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        if retry_after is not None:
            head += [b"retry-after: %d\r\n" % retry_after]
            kind = b"application/problem+json"
            body = orjson.dumps({"type": "/problems/too-many-requests",
                                 "title": "Too many requests", "status": status,
                                 "detail": message})
        head += [b"content-type: ", kind, b"\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()
