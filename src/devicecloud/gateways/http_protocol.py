"""uvicorn's httptools protocol with a deadline and a size limit for each request's headers."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# A connection whose next request's headers are not complete this long after it opened, or
# after its last response, is closed: a peer that sends nothing, or trickles header bytes
# (slowloris), holds a file descriptor no longer than this.
HEADER_TIMEOUT = 10.0
# Headers larger than this are refused (431): the parser itself keeps any amount.
HEADER_LIMIT = 64 * 1024


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Times out and bounds the headers of every request; idle keep-alive connections are
    closed by uvicorn's own `timeout_keep_alive`."""

    header_timer: asyncio.TimerHandle | None = None
    header_bytes = 0  # received since the timer was armed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
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

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` and close the connection."""
        self._cancel_header_timer()
        body = message.encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: text/plain; charset=utf-8\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()
