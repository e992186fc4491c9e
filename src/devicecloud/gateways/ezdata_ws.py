"""EzData over WebSocket (`/ws`): text frames in, text frames out, one session per socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.device_session import DeviceSession
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.outbox import Outbox, Payload

PUSH_PACING_SECONDS = 2.0


class Sender:
    """Writes one socket's outgoing messages in order without a task per message: a send
    completes at once while the socket is writable, so it is stepped synchronously; only when
    one has to wait (the peer reads slowly) does a task finish it and the messages behind it."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.backlog: deque[str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.broken = False

    def write(self, data: Payload) -> None:
        # Text frames only: firmwares ignore binary frames.
        text = data if isinstance(data, str) else data.decode()
        if self.broken:
            return
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
        while self.task is not None and not self.task.done():
            await asyncio.wait([self.task])

    def pending(self) -> bool:
        return self.backlog is not None and not self.broken


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
