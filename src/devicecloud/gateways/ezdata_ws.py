"""EzData over WebSocket (`/ws`): text frames in, text frames out, one session per socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.device_session import DeviceSession
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.outbox import Outbox, Payload

PUSH_PACING_SECONDS = 2.0


def _direct_protocol(websocket: WebSocket) -> WebSocketsSansIOProtocol | None:
    """uvicorn's sans-I/O protocol object behind `websocket`, or None if another server runs it.
    Starlette hands the application the server's own `receive`, bound to that object."""
    protocol = getattr(websocket._receive, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol):
        return None
    needed = ("conn", "transport", "writable", "close_sent", "disconnected")
    return protocol if all(hasattr(protocol, name) for name in needed) else None


class Sender:
    """Writes one socket's outgoing messages in order.

    On uvicorn's sans-I/O protocol the frames written during one loop iteration are built by
    its `websockets` connection (so negotiated extensions still apply) and leave in one
    `write()`: an ASGI send costs one system call per frame. Otherwise, and while the socket
    cannot take more (the peer reads slowly), each goes out as an ASGI send, stepped
    synchronously since it completes at once while the socket is writable; only a send that has
    to wait gets a task, which finishes it and the messages behind it."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.direct = _direct_protocol(websocket)
        self.batch: list[bytes] | None = None
        self.backlog: deque[str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.broken = False

    def write(self, data: Payload) -> None:
        if self.broken:
            return
        if self.direct is not None and self.backlog is None:
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
        if not protocol.writable.is_set() or self.backlog is not None:
            for data in batch:  # the ASGI send waits until the socket can take more
                self._send(data.decode())
            return
        conn = protocol.conn
        try:
            for data in batch:
                conn.send_text(data)
        except Exception:  # the connection is closing; what is left has nowhere to go
            self.broken = True
            return
        protocol.transport.write(b"".join(conn.data_to_send()))

    def _send(self, text: str) -> None:
        if self.backlog is not None:
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

    async def flushed(self) -> None:
        """Return once everything written so far has been handed to the socket."""
        if self.batch:
            self._flush()
        while self.task is not None and not self.task.done():
            await asyncio.wait([self.task])

    def pending(self) -> bool:
        return (self.backlog is not None or bool(self.batch)) and not self.broken


async def serve_ezdata_websocket(websocket: WebSocket, cloud: DeviceCloud, hub: Hub) -> None:
    """Run one device's WebSocket until it closes."""
    await websocket.accept()
    sender = Sender(websocket)
    session = DeviceSession(cloud, hub, Outbox(sender.write, PUSH_PACING_SECONDS),
                            "websocket", sender.flushed)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            session.receive(text if text is not None else message.get("bytes") or b"")
    except WebSocketDisconnect:
        pass
    finally:
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
