"""`--log-format json` (operations spec section 3): one JSON object a line, and no secret in the
log of a whole session at debug level."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
from support.clients import WsDevice
from support.console_client import PASSWORD, ConsoleUser
from support.espai import add_device, listed, new_tenant
from support.mqtt_clients import PahoDevice
from support.server import Server, random_mac

from devicecloud.logs import JsonFormatter, redact


async def _session(server: Server) -> list[str]:
    """Register, write over MQTT and WebSocket, pair, log in to the console, use the ESP-AI
    keys; returns every secret that crossed."""
    mac = random_mac()
    token = server.register(mac=mac)
    device = await WsDevice.connect(server.ws_url, token)
    assert (await device.request(100, name="t", value=1))["code"] == 200
    paho = await asyncio.to_thread(PahoDevice, server.mqtt_port, token, mac)
    assert (await asyncio.to_thread(paho.request, 101, name="t", value=2))["code"] == 200
    await asyncio.to_thread(paho.close)
    assert (await device.recv_json())["cmd"] == 107  # the MQTT write, pushed
    code = (await device.request(112))["body"]["pairCode"]
    user = await asyncio.to_thread(ConsoleUser.sign_up, server)
    paired = await asyncio.to_thread(user.post, "/console/devices/pair", code=code)
    assert paired.headers["location"] == f"/console/devices/{token}"
    await device.close()

    def console_login() -> None:
        again = ConsoleUser(server)
        again.get("/console/login")
        reply = again.post("/console/login", email=user.email, password=PASSWORD)
        assert reply.status_code == 303, reply.text
        bad = again.post("/console/login", email=user.email, password="wrong " + PASSWORD)
        assert bad.status_code != 303

    await asyncio.to_thread(console_login)
    tenant = await asyncio.to_thread(new_tenant, server)
    assert (await asyncio.to_thread(add_device, server, tenant, random_mac()))["success"]
    await asyncio.to_thread(listed, server, tenant)
    info = await asyncio.to_thread(httpx.get, f"{server.url}/sdk/get_server_info_by_api_key",
                                   params={"api_key": tenant.api_key})
    assert info.status_code == 200
    await asyncio.to_thread(httpx.get, f"{server.url}/api/v2/{token}/list")
    return [token, code, code.replace("-", ""), PASSWORD, "wrong " + PASSWORD,
            tenant.open_api_key, tenant.api_key, "secret-password", "lykj987654321"]


async def test_a_whole_session_logs_json_and_no_secret(tmp_path: Path) -> None:
    server = Server(tmp_path / "data",
                    extra_args=("--log-format", "json", "--log-level", "debug")).start()
    try:
        secrets = await _session(server)
    finally:
        assert server.stop() == 0, server.log()
    log = server.log()
    lines = log.splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in entries)
    loggers = {entry["logger"] for entry in entries}
    assert "uvicorn.access" in loggers and any(name.startswith("devicecloud") for name in loggers)
    for secret in secrets:
        assert secret.lower() not in log.lower(), f"{secret!r} is in the log"


def test_context_fields_and_masking() -> None:
    record = logging.LogRecord("devicecloud.x", logging.INFO, __file__, 1, "wrote %s", ("t",),
                               None)
    record.__dict__.update(transport="mqtt", device="aabbccddeeff", command="modify", ms=1.5)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "wrote t" and entry["level"] == "info"
    assert (entry["transport"], entry["device"], entry["command"], entry["ms"]) == (
        "mqtt", "aabbccddeeff", "modify", 1.5)
    token = "0123456789abcdef" * 2
    assert token not in redact(f"GET /api/v2/{token}/list")
    assert "k3y" not in redact("GET /sdk/x?api_key=k3y&b=2 HTTP/1.1")
    assert redact("""> TEXT '{"pairCode":"X8HD-P7QH"}' [26 bytes]""") == "> TEXT … [26 bytes]"
    assert redact("< Cookie: session=abc.def") == "< Cookie: …"
