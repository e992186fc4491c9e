"""The ESP-AI firmware's WebSocket (`/connect_espai_node`): presence, reports, and pushes.

The device connects with `?device_type=hardware&device_id=<MAC>&version=...&api_key=...`. While the
socket is open the device counts as online (it joins the hub like any live connection). Its text
frames fill the record (`upload_device_info`, `battery`, `get_local_data_res`); the server sends
`set_local_data`, `message`, `get_local_data`, `ota_update`, and, when the device is unbound, an
error whose message contains `设备已解绑`, after which it closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from devicecloud.core.errors import DeviceCloudError, InvalidRequest
from devicecloud.core.espai.models import EspAiDevice
from devicecloud.core.espai.platform import EspAi
from devicecloud.core.espai.values import UNBOUND_NOTICE
from devicecloud.core.events import DeviceDeleted, DeviceReleased, EspAiMessage, Event
from devicecloud.core.models import loads
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.ws_protocol import direct_protocol, disconnect

log = logging.getLogger(__name__)
TRANSPORT = "espai-websocket"
SEND_QUEUE_LIMIT = 256  # messages waiting for a firmware that does not read; then it is dropped
_CLOSE = None


class EspAiConnection:
    """One firmware socket; a `LiveConnection` of the hub that ignores EzData pushes."""

    transport = TRANSPORT

    def __init__(self, websocket: WebSocket, device: EspAiDevice) -> None:
        self.websocket = websocket
        self.device = device
        self.outgoing: asyncio.Queue[str | None] = asyncio.Queue()
        self.idle = asyncio.Event()
        self.idle.set()

    def deliver(self, event: Event) -> None:
        """ESP-AI messages go to the firmware; a release sends the unbound notice and closes."""
        if isinstance(event, EspAiMessage):
            self.send(event.message)
        elif isinstance(event, DeviceReleased | DeviceDeleted):
            self.finish(unbound_notice())

    async def drain(self) -> None:
        await self.idle.wait()

    def send(self, message: dict[str, Any]) -> None:
        if self.outgoing.qsize() >= SEND_QUEUE_LIMIT:
            self._drop()
            return
        self.outgoing.put_nowait(orjson.dumps(message).decode())

    def _drop(self) -> None:
        """The firmware reads nothing: forget what waits for it and drop the socket."""
        while not self.outgoing.empty():
            self.outgoing.get_nowait()
        protocol = direct_protocol(self.websocket)
        if protocol is not None:
            disconnect(protocol, f"{SEND_QUEUE_LIMIT} ESP-AI messages unread")
        else:
            log.info("ESP-AI socket of %s: %d messages unread; closing",
                     self.device.device_id, SEND_QUEUE_LIMIT)
            self.outgoing.put_nowait(_CLOSE)

    def finish(self, message: dict[str, Any]) -> None:
        """Send `message`, then close the socket."""
        self.send(message)
        self.outgoing.put_nowait(_CLOSE)

    async def send_all(self) -> None:
        while True:
            text = await self.outgoing.get()
            if text is _CLOSE:
                await self.websocket.close(1000)
                return
            await self.websocket.send_text(text)


def unbound_notice() -> dict[str, str]:
    return {"type": "error", "message": UNBOUND_NOTICE}


async def _handle(espai: EspAi, device: EspAiDevice, text: str) -> None:
    try:
        doc = loads(text)  # integers beyond 64 bits or deep nesting: ignored like bad JSON
    except (orjson.JSONDecodeError, InvalidRequest):
        return
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "upload_device_info":
        await espai.devices.report_info(device, doc.get("data"))
    elif kind == "battery":
        await espai.devices.report_battery(device, doc.get("data"))
    elif kind == "get_local_data_res":
        await espai.devices.report_local_data(device, doc.get("data"))
    elif kind == "ota_update_error":
        log.info("device %s reports a failed firmware update", device.device_id)


async def serve_espai_websocket(websocket: WebSocket, espai: EspAi, hub: Hub) -> None:
    """Run one firmware socket until it closes."""
    await websocket.accept()
    query = websocket.query_params
    try:
        device = await espai.devices.connect(query.get("device_id"), query.get("api_key"))
    except DeviceCloudError as problem:
        with contextlib.suppress(Exception):
            await websocket.send_text(orjson.dumps(
                {"type": "error", "message": str(problem)}).decode())
            await websocket.close(1000)
        return
    connection = EspAiConnection(websocket, device)
    sender = asyncio.create_task(connection.send_all())
    hub.join(device.token, connection)
    try:
        await espai.firmware.socket_from(device, websocket.client.host if websocket.client else "")
        await espai.devices.seen(device)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                continue  # the firmware sends no binary frames on this socket
            connection.idle.clear()
            try:
                await _handle(espai, device, text)
            except DeviceCloudError:
                pass
            except Exception:
                log.exception("ESP-AI frame from %s failed", device.device_id)
            finally:
                connection.idle.set()
    except WebSocketDisconnect:
        pass
    finally:
        hub.leave(device.token, connection)
        for _ in range(100):  # let a queued notice go out
            if connection.outgoing.empty() or sender.done():
                break
            await asyncio.sleep(0.01)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        with contextlib.suppress(Exception):
            await espai.devices.seen(device)
