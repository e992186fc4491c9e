"""EzData over WebSocket (`/ws`): text frames in, text frames out, one session per socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.device_session import DeviceSession
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.outbox import Outbox, Payload
from devicecloud.gateways.ws_protocol import direct_protocol, disconnect

log = logging.getLogger(__name__)

PUSH_PACING_SECONDS = 2.0
LOGIN_TIMEOUT = 10.0  # a socket not logged in by then is closed, as MQTT does without CONNECT
WRITE_BUFFER_LIMIT = 8 * 1024 * 1024  # a peer leaving more than this unread is dropped
STALL_SECONDS = 30.0  # and so is one that reads nothing for this long while data waits
BACKLOG_LIMIT = 1024  # messages waiting for an ASGI send, under another server


class Sender:
    """Writes one socket's outgoing messages in order.

    On uvicorn's sans-I/O protocol the frames written during one loop iteration are built by
    its `websockets` connection (so negotiated extensions still apply) and leave in one
    `write()`: an ASGI send costs one system call per frame. Once the socket is full (the peer
    reads slowly) the outbox holds its pushes (coalescing them) and `readable` keeps the socket
    from taking requests until it drains; a peer that leaves more than WRITE_BUFFER_LIMIT
    unread, or reads nothing for STALL_SECONDS, is dropped with a log line.

    Under another server each message is an ASGI send, stepped synchronously since it
    completes at once while the socket is writable; only a send that has to wait gets a task,
    which finishes it and the messages behind it."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.direct = direct_protocol(websocket)
        self.outbox: Outbox | None = None
        self.batch: list[bytes] | None = None
        self.backlog: deque[str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.closing: asyncio.Future[None] | None = None
        self.broken = False

    def write(self, data: Payload) -> None:
        if self.broken:
            return
        if self.direct is not None:
            if self.batch is None:
                self.batch = []
                asyncio.get_running_loop().call_soon(self._flush)
            self.batch.append(data.encode() if isinstance(data, str) else data)
            return
        # Text frames only: firmwares ignore binary frames.
        self._send(data if isinstance(data, str) else data.decode())

    def _flush(self) -> None:
        batch, self.batch = self.batch, None
        protocol = self.direct
        if not batch or self.broken or protocol is None:
            return
        if protocol.disconnected or protocol.close_sent or protocol.transport.is_closing():
            self.broken = True  # as an ASGI send would find: the socket is gone
            return
        conn = protocol.conn
        try:
            for data in batch:
                conn.send_text(data)
        except Exception:  # the connection is closing; what is left has nowhere to go
            self.broken = True
            return
        protocol.transport.write(b"".join(conn.data_to_send()))
        if not protocol.writable.is_set():
            self._full(protocol)

    def _full(self, protocol: WebSocketsSansIOProtocol) -> None:
        unread = protocol.transport.get_write_buffer_size()
        if unread > WRITE_BUFFER_LIMIT:
            self.drop(f"{unread} bytes unread")
        elif self.task is None:
            if self.outbox is not None:
                self.outbox.hold()
            self.task = asyncio.create_task(self._drained(protocol))

    async def _drained(self, protocol: WebSocketsSansIOProtocol) -> None:
        try:
            async with asyncio.timeout(STALL_SECONDS):
                await protocol.writable.wait()
        except TimeoutError:
            self.drop(f"nothing read for {STALL_SECONDS:g} s")
        finally:
            self.task = None
        if not self.broken and self.outbox is not None:
            self.outbox.release()

    async def readable(self) -> None:
        """Return once the socket may take another request: not while it is full."""
        while self.direct is not None and self.task is not None and not self.task.done():
            await asyncio.wait([self.task])

    def _send(self, text: str) -> None:
        if self.backlog is not None:
            if len(self.backlog) >= BACKLOG_LIMIT:
                self.drop(f"{len(self.backlog)} messages unread")
                return
            self.backlog.append(text)
            return
        sending = self.websocket.send_text(text)
        try:
            waiting = sending.send(None)
        except StopIteration:
            return
        except Exception:  # the socket is gone; what is left has nowhere to go
            self.broken = True
            return
        # Stepped by hand, not by a Task: clear what a Task would, or awaiting it again fails.
        waiting._asyncio_future_blocking = False
        self.backlog = deque()
        self.task = asyncio.create_task(self._finish(sending, waiting))

    async def _finish(self, sending: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            while True:
                with contextlib.suppress(Exception):
                    await waiting
                try:
                    waiting = sending.send(None)
                except StopIteration:
                    break
            while self.backlog:
                await self.websocket.send_text(self.backlog.popleft())
        except Exception:
            self.broken = True
        finally:
            self.backlog = None

    def drop(self, reason: str) -> None:
        """Close the socket and forget what it has not read, with one log line."""
        self.broken = True
        if self.backlog:
            self.backlog.clear()
        if self.direct is not None:
            disconnect(self.direct, reason)
        elif self.closing is None:
            log.info("WebSocket dropped: %s", reason)
            self.closing = asyncio.ensure_future(self.websocket.close(1008))

    async def flushed(self) -> None:
        """Return once everything written so far has been handed to the socket."""
        if self.batch:
            self._flush()
        while self.direct is None and self.task is not None and not self.task.done():
            await asyncio.wait([self.task])

    def pending(self) -> bool:
        return (self.backlog is not None or bool(self.batch)) and not self.broken


def _login_due(session: DeviceSession, sender: Sender) -> None:
    if session.device is None and not sender.broken:
        sender.drop(f"no login within {LOGIN_TIMEOUT:g} s")


async def serve_ezdata_websocket(websocket: WebSocket, cloud: DeviceCloud, hub: Hub) -> None:
    """Run one device's WebSocket until it closes."""
    await websocket.accept()
    sender = Sender(websocket)
    session = DeviceSession(cloud, hub, Outbox(sender.write, PUSH_PACING_SECONDS),
                            "websocket", sender.flushed)
    sender.outbox = session.outbox
    login_due = asyncio.get_running_loop().call_later(LOGIN_TIMEOUT, _login_due, session, sender)
    try:
        while True:
            if sender.task is not None:
                await sender.readable()
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            session.receive(text if text is not None else message.get("bytes") or b"")
    except WebSocketDisconnect:
        pass
    finally:
        login_due.cancel()
        await session.close()
        # Answers to requests already received still go out if the socket allows.
        for _ in range(100):
            if not sender.pending():
                break
            await asyncio.sleep(0.01)
        if sender.task is not None:
            sender.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender.task
