"""Every released schema upgrades: a database made by each earlier release (a fixture in
tests/fixtures/schemas/, made by `scripts/make_schema_fixture.py` running that release) is served
by this one, with its devices, tokens, values, accounts and agents intact."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.console_client import ConsoleUser
from support.server import POSTGRES_ADMIN_URL, Server, postgres_database

from devicecloud.core.espai.values import NO_VOICE_SERVER

FIXTURES = Path(__file__).parent.parent / "fixtures" / "schemas"
ENGINE = "postgresql" if POSTGRES_ADMIN_URL else "sqlite"
MADE = sorted(FIXTURES.glob(f"*.{ENGINE}.sql"))


def load(fixture: Path, data_dir: Path) -> dict[str, str]:
    """The fixture's database in `data_dir` (or its PostgreSQL database); the server's env."""
    if ENGINE == "sqlite":
        import sqlite3

        data_dir.mkdir(parents=True)
        with sqlite3.connect(data_dir / "devicecloud.db") as conn:
            conn.executescript(fixture.read_text())
        return {}
    url = postgres_database(data_dir)
    subprocess.run(["psql", "--quiet", "--set", "ON_ERROR_STOP=1", "--file", str(fixture), url],
                   check=True, capture_output=True, timeout=60)
    return {"DEVICECLOUD_DATABASE_URL": url}


def test_there_is_a_fixture_of_every_released_schema() -> None:
    migrations = sorted(p.name[:4] for p in (Path(__file__).parents[2] / "src" / "devicecloud" /
                                             "store" / "migrations" / "versions").glob("0*.py"))
    released = {p.name[:4] for p in MADE}
    # 0003 never was a release's newest (it came with 0004); PostgreSQL came with 0004.
    expected = {m for m in migrations if m != "0003" and (ENGINE == "sqlite" or m >= "0004")}
    assert released == expected


@pytest.mark.parametrize("fixture", MADE, ids=[p.name.split(".")[0] for p in MADE])
def test_a_database_of_an_earlier_release_is_served(tmp_path: Path, fixture: Path) -> None:
    made: dict[str, Any] = json.loads(fixture.with_suffix(".json").read_text())
    data_dir = tmp_path / "data"
    server = Server(data_dir, env=load(fixture, data_dir)).start()
    try:
        for device in made["devices"]:
            for name, value in device["fields"].items():
                reply = httpx.get(f"{server.url}/api/v2/{device['token']}/dataByKey/{name}")
                assert reply.json()["data"]["value"] == value, (name, reply.text)
            assert server.register(device["mac"], "core2") == device["token"]
            history = httpx.get(
                f"{server.url}/api/v2/{device['token']}/historyByKey/temp").json()["data"]
            assert len(history) >= 2
        if "account" in made:
            user = ConsoleUser(server)
            user.get("/console/login")
            reply = user.post("/console/login", email=made["account"]["email"],
                              password=made["account"]["password"])
            assert reply.status_code == 303, reply.text
            listed = httpx.post(f"{server.url}/devices/list", json={},
                                headers={"authorization": made["account"]["open_api_key"]})
            assert listed.json()["success"] is True, listed.text
        if "agent" in made:
            info = httpx.get(f"{server.url}/sdk/get_server_info_by_api_key",
                             params={"api_key": made["agent"]["api_key"]}).json()
            assert info["message"] == NO_VOICE_SERVER, info  # found, and made without one
    finally:
        assert server.stop() == 0, server.log()[-2000:]
