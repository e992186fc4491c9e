"""EzData over WebSocket (`/ws`): text frames in, text frames out, one session per socket."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.device_session import DeviceSession
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.outbox import Outbox, Payload

PUSH_PACING_SECONDS = 2.0


async def _send_all(websocket: WebSocket, queue: asyncio.Queue[Payload]) -> None:
    while True:
        data = await queue.get()
        try:
            # Text frames only: firmwares ignore binary frames.
            await websocket.send_text(data if isinstance(data, str) else data.decode())
        finally:
            queue.task_done()


async def serve_ezdata_websocket(websocket: WebSocket, cloud: DeviceCloud, hub: Hub) -> None:
    """Run one device's WebSocket until it closes."""
    await websocket.accept()
    queue: asyncio.Queue[Payload] = asyncio.Queue()
    session = DeviceSession(cloud, hub, Outbox(queue.put_nowait, PUSH_PACING_SECONDS),
                            "websocket", queue.join)
    sender = asyncio.create_task(_send_all(websocket, queue))
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
            if queue.empty() or sender.done():
                break
            await asyncio.sleep(0.01)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
