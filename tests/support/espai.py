"""Helpers for the ESP-AI tests: accounts and agents made with the CLI, the third-party API, and a
client that speaks the firmware's WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import sqlalchemy
from websockets.asyncio.client import ClientConnection, connect

from support.polling import eventually
from support.server import Server


def cli(server: Server, *args: str) -> Any:
    """Run `devicecloud ARGS --data-dir <the server's>` and parse what it prints as JSON."""
    done = subprocess.run([sys.executable, "-m", "devicecloud", *args, "--data-dir",
                           str(server.data_dir)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **server.env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


@dataclass
class Tenant:
    """An account with one agent."""

    email: str
    open_api_key: str
    agent_id: str
    api_key: str


def new_tenant(server: Server, *, server_url: str = "", name: str = "琳琅",
               phone: str = "15916888888") -> Tenant:
    email = f"{secrets.token_hex(4)}@example.com"
    account = cli(server, "accounts", "create", email, "--password", "secret-password",
                  "--name", name, "--phone", phone)
    extra = ("--server", server_url) if server_url else ()
    agent = cli(server, "agents", "create", "--account", email, *extra, "乌鸦哥")
    return Tenant(email, account["open_api_key"], agent["id"], agent["api_key"])


def set_public_id(server: Server, mac: str, public_id: str) -> None:
    """Give a device the row id a fixture needs (as if the platform had assigned it)."""
    url = server.env.get("DEVICECLOUD_DATABASE_URL") or f"sqlite:///{server.data_dir}/devicecloud.db"
    if url.startswith(("postgresql:", "postgres:")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        done = conn.execute(sqlalchemy.text("UPDATE devices SET public_id = :id WHERE mac = :mac"),
                            {"id": public_id, "mac": mac.lower()})
        assert done.rowcount == 1
    engine.dispose()


def colon_mac(mac: str) -> str:
    return ":".join(mac[i:i + 2] for i in range(0, 12, 2)).upper()


def api(server: Server, path: str, body: Any, key: str | None, raw: bytes | None = None) -> Any:
    """POST to the third-party API; every answer is HTTP 200 with JSON."""
    headers = {"authorization": key} if key is not None else {}
    if raw is not None:
        reply = httpx.post(f"{server.url}{path}", content=raw, headers=headers)
    else:
        reply = httpx.post(f"{server.url}{path}", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def add_device(server: Server, tenant: Tenant, mac: str, **fields: str) -> Any:
    """What the firmware posts from its Wi-Fi setup page."""
    body = {"version": "1.22.34", "bin_id": "0", "device_id": colon_mac(mac),
            "api_key": tenant.api_key, "wifi_ssid": "联域科技", "wifi_pwd": "lykj987654321",
            **fields}
    return httpx.post(f"{server.url}/devices/add", json=body).json()


def listed(server: Server, tenant: Tenant, **filters: Any) -> Any:
    doc = api(server, "/devices/list", filters, tenant.open_api_key)
    assert doc["success"] is True, doc
    return doc


def wait_online(server: Server, tenant: Tenant, mac: str, online: str,
                timeout: float = 5.0) -> dict[str, Any]:
    """The device's record once its `is_online` is `online`."""
    def record() -> dict[str, Any] | None:
        rows = listed(server, tenant, device_id=mac)["data"]
        return dict(rows[0]) if rows and rows[0]["is_online"] == online else None

    return eventually(record, f"is_online {online}", timeout)


class Firmware:
    """The firmware's `/connect_espai_node` socket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, server: Server, mac: str, api_key: str) -> Firmware:
        query = urlencode({"device_type": "hardware", "device_id": colon_mac(mac),
                           "version": "1.22.34", "api_key": api_key, "ext2": "", "ext3": "1"})
        url = f"ws://127.0.0.1:{server.http_port}/connect_espai_node?{query}"
        return cls(await connect(url, ping_interval=10, ping_timeout=5))

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message, ensure_ascii=False))

    async def recv(self, timeout: float = 3.0) -> Any:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(data, str), "the server answers with text frames"
        return json.loads(data)

    async def closed(self, timeout: float = 3.0) -> bool:
        """True once the server has closed the socket."""
        try:
            await asyncio.wait_for(self.ws.wait_closed(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self.ws.close()
