"""Test clients that send what real firmware sends, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


class WsDevice:
    """An EzData device on `/ws`, framing requests the way the Tab5 client does (with spaces)."""

    def __init__(self, ws: ClientConnection, token: str) -> None:
        self.ws = ws
        self.token = token

    @classmethod
    async def connect(cls, ws_url: str, token: str, login: bool = True,
                      **options: Any) -> WsDevice:
        device = cls(await connect(ws_url, **options), token)
        if login:
            await device.send({"deviceToken": token})
            assert await device.recv() == "device Login successful"
        return device

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, timeout: float = 2.0) -> str:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(data, str), "the server must answer with text frames"
        return data

    async def recv_json(self, timeout: float = 2.0) -> Any:
        return json.loads(await self.recv(timeout))

    async def request(self, request_type: int | str, **body: Any) -> Any:
        await self.send({"deviceToken": self.token,
                         "body": {**body, "requestType": request_type}})
        return await self.recv_json()

    async def before_marker(self) -> list[Any]:
        """Every message the server had queued for this connection, without waiting for silence:
        a LIST request (its answer also ends push pacing, so a held push goes out right after
        it), then, once answered, a heartbeat. Returns what arrived besides the two answers."""
        await self.send({"deviceToken": self.token, "body": {"requestType": 103}})
        others = []
        while (message := await self.recv_json())["cmd"] != 103:  # never a push's cmd
            others.append(message)
        await self.send({"deviceToken": self.token, "body": "ping"})
        while (text := await self.recv()) != "pong":
            others.append(json.loads(text))
        return others

    async def close(self) -> None:
        await self.ws.close()


class StreamClient:
    """A client over one asyncio stream, read only when asked to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def closed_within(self, seconds: float) -> bool:
        """True if the server closes (or resets) the connection within `seconds`; what arrives
        meanwhile is dropped."""
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
