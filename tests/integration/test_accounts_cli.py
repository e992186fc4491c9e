"""`devicecloud accounts create`: accounts for admins and scripts, usable in the console."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from support.server import Server, database_url


def create(data_dir: Path, *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devicecloud", "accounts", "create", *args,
                           "--data-dir", str(data_dir), "--database-url", database_url(data_dir)],
                          env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def test_create_prints_the_account_with_its_open_api_key(tmp_path: Path) -> None:
    done = create(tmp_path / "data", "Grace@Example.com", "--password", "a long secret",
                  "--name", "Grace", "--phone", "+44 20 7946 0000", "--create-database")
    assert done.returncode == 0, done.stderr
    account = json.loads(done.stdout)
    assert account["email"] == "grace@example.com"
    assert account["display_name"] == "Grace" and account["phone"] == "+44 20 7946 0000"
    assert re.fullmatch(r"[0-9a-f]{32}", account["open_api_key"])
    assert isinstance(account["id"], int) and isinstance(account["created_at"], int)
    assert "password" not in done.stdout and "argon2" not in done.stdout


def test_create_refuses_a_taken_email_and_a_short_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert create(data, "ada@example.com", "--password", "a long secret",
                  "--create-database").returncode == 0
    again = create(data, "ADA@example.com", "--password", "another secret")
    assert again.returncode != 0 and "already exists" in again.stderr and not again.stdout
    short = create(data, "bob@example.com", "--password", "short")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    bad = create(data, "not-an-email", "--password", "a long secret")
    assert bad.returncode != 0 and "valid email" in bad.stderr


def test_an_account_made_by_the_cli_logs_in_to_the_console(own_server: Server) -> None:
    own_server.start()
    done = create(own_server.data_dir, "lin@example.com", "--password", "a long secret",
                  "--name", "Lin", env=own_server.env)
    assert done.returncode == 0, done.stderr
    with httpx.Client(base_url=own_server.url) as browser:
        page = browser.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        reply = browser.post("/console/login", data={
            "csrf": token.group(1), "email": "lin@example.com", "password": "a long secret"})
        assert reply.status_code == 303 and reply.headers["location"] == "/console/devices"
        account = browser.get("/console/account")
        assert account.status_code == 200
        assert json.loads(done.stdout)["open_api_key"] in account.text
