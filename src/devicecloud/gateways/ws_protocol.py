"""uvicorn's sans-I/O WebSocket protocol, bounded against peers that do not read."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger(__name__)

# A socket whose peer leaves this much unread is dropped: uvicorn answers every ping, so a peer
# that floods pings and reads nothing would otherwise fill memory with pongs.
CONTROL_BUFFER_LIMIT = 256 * 1024


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """Answers a ping only while the peer reads what it was sent; calls `on_lost` once the
    connection ends (the HTTP protocol it was upgraded from uncounts it from the limits)."""

    on_lost: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        lost, self.on_lost = self.on_lost, None
        if lost is not None:
            lost()

    def handle_ping(self) -> None:
        if self.transport.get_write_buffer_size() > CONTROL_BUFFER_LIMIT:
            disconnect(self, "pings without reading the pongs")
            return
        super().handle_ping()


def direct_protocol(websocket: WebSocket) -> WebSocketsSansIOProtocol | None:
    """uvicorn's sans-I/O protocol object behind `websocket`, or None if another server runs it.
    Starlette hands the application the server's own `receive`, bound to that object."""
    protocol = getattr(websocket._receive, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol):
        return None
    needed = ("conn", "transport", "writable", "close_sent", "disconnected")
    return protocol if all(hasattr(protocol, name) for name in needed) else None


def disconnect(protocol: WebSocketsSansIOProtocol, reason: str) -> None:
    """Drop the connection and what it has not read, with one log line."""
    if protocol.transport.is_closing() and protocol.disconnected:
        return
    peer = "{}:{}".format(*protocol.client) if protocol.client else "-"
    log.info("WebSocket %s dropped: %s", peer, reason)
    protocol.transport.abort()
