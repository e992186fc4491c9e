"""`--registration allow-list`: only the MACs an admin (`devicecloud devices allow`) or an account
(the console) added may register; devices known before keep registering; `open` is EzData's way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from support.console_client import ConsoleUser
from support.server import Server, database_url, random_mac


def register(server: Server, mac: str) -> dict[str, object]:
    reply = httpx.post(f"{server.url}/api/v2/device/registerMac",
                       json={"mac": mac, "deviceType": "core2"})
    assert reply.status_code == 200
    body: dict[str, object] = reply.json()
    return body


def allow(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devicecloud", "devices", "allow", *args,
                           "--data-dir", str(data_dir), "--database-url", database_url(data_dir)],
                          env=os.environ, capture_output=True, text=True, timeout=60, check=False)


def test_only_allowed_macs_register_and_known_ones_keep_their_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    known = random_mac()
    server = Server(data).start()
    try:
        token = register(server, known)["data"]
    finally:
        assert server.stop() == 0
    server = Server(data, extra_args=("--registration", "allow-list")).start()
    try:
        assert register(server, known)["data"] == token  # registered before: still welcome
        stranger = random_mac()
        refused = register(server, stranger)
        assert refused["code"] == 500 and "allow-list" in str(refused["msg"]), refused
        assert register(server, stranger)["code"] == 500  # refusing made no record

        admitted = random_mac()
        listed = allow(data, admitted.lower())
        assert listed.returncode == 0, listed.stderr
        line = json.loads(listed.stdout)
        assert line["mac"] == admitted.lower() and line["owner"] is None
        assert register(server, admitted)["data"] == line["token"]
        bad = allow(data, "not-a-mac")
        assert bad.returncode != 0 and "invalid mac" in bad.stderr

        ada = ConsoleUser.sign_up(server)
        assert 'action="/console/devices/allow"' in ada.get("/console/devices").text
        claimed = random_mac()
        reply = ada.post("/console/devices/allow", mac=claimed)
        assert reply.status_code == 303 and "may register now" in ada.flash(reply)
        token = register(server, claimed)["data"]
        assert isinstance(token, str) and token in ada.get("/console/devices").text
        bob = ConsoleUser.sign_up(server)  # a MAC known already is claimed by token, not by MAC
        assert "known already" in bob.flash(bob.post("/console/devices/allow", mac=claimed))
        assert "known already" in bob.flash(bob.post("/console/devices/allow", mac=known))
        assert token not in bob.get("/console/devices").text
    finally:
        assert server.stop() == 0


def test_open_registration_has_no_allow_list(server: Server) -> None:
    assert isinstance(register(server, random_mac())["data"], str)
    user = ConsoleUser.sign_up(server)
    assert 'action="/console/devices/allow"' not in user.get("/console/devices").text
    answer = user.flash(user.post("/console/devices/allow", mac=random_mac()))
    assert "register by themselves" in answer
