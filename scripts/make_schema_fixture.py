"""Make a schema fixture: a database made by a devicecloud release, for the upgrade tests.

    .venv/bin/python scripts/make_schema_fixture.py [--src DIR] [--engine sqlite|postgresql]

Runs the devicecloud in `--src` (a checkout's `src/`, default this one's) as a real server on
free ports, gives it devices, fields of each type, a changed value, a stored file, an account
and, where the release has them, an ESP-AI agent, through its HTTP API and its commands; then
dumps the database as SQL to `tests/fixtures/schemas/<revision>.<engine>.sql`, with what it made
in `<revision>.json`. Run it before a release adds a migration, so that every released schema
keeps a fixture (tests/integration/test_schema_upgrades.py upgrades each one).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "schemas"
POSTGRES = os.environ.get("DEVICECLOUD_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/postgres")
PASSWORD = "correct horse battery staple"
FIELDS = [("temp", 21.5, "number"), ("label", "kitchen", "string"), ("on", True, "bool"),
          ("config", {"rate": 5, "tags": ["a", "b"]}, "json")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _devicecloud(src: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-m", "devicecloud", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=120)


def _revision(database_url: str) -> str:
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url.replace("postgresql://",
                                                           "postgresql+psycopg://"))
    with engine.connect() as connection:
        return str(connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
                   .scalar())


def _populate(url: str, src: Path, storage: list[str]) -> dict[str, Any]:
    made: dict[str, Any] = {"devices": []}
    for index in range(3):
        mac = f"24A16000000{index}"
        reply = httpx.post(f"{url}/api/v2/device/registerMac",
                           json={"mac": mac, "deviceType": "core2"}).json()
        token = reply["data"]
        fields = {}
        for name, value, kind in FIELDS:
            written = httpx.post(f"{url}/api/v2/{token}/add",
                                 json={"name": name, "value": value, "dataType": kind}).json()
            if written["code"] == 200:
                fields[name] = written["data"]["value"]
        httpx.post(f"{url}/api/v2/{token}/add",
                   json={"name": "temp", "value": 22.5 + index, "dataType": "number"})
        fields["temp"] = 22.5 + index
        made["devices"].append({"mac": mac, "token": token, "fields": fields})
    token = made["devices"][0]["token"]
    upload = httpx.post(f"{url}/api/v2/{token}/uploadFile",
                        data={"name": "photo", "deviceToken": token},
                        files={"file": ("cat.jpeg", b"\xff\xd8\xff" + b"j" * 100,
                                        "image/jpeg")}).json()
    if upload.get("code") == 200:
        made["devices"][0]["fields"]["photo"] = upload["data"]["value"]
    account = _devicecloud(src, "accounts", "create", "ada@example.com", "--password", PASSWORD,
                           "--name", "Ada", *storage)
    if account.returncode == 0:
        made["account"] = {"email": "ada@example.com", "password": PASSWORD,
                           **json.loads(account.stdout)}
        agent = _devicecloud(src, "agents", "create", "--account", "ada@example.com",
                             "robot", *storage)
        if agent.returncode == 0:
            made["agent"] = json.loads(agent.stdout)
    return made


def _dump(engine: str, database_url: str, data_dir: Path) -> str:
    if engine == "sqlite":
        with sqlite3.connect(data_dir / "devicecloud.db") as conn:
            return "\n".join(conn.iterdump()) + "\n"
    return subprocess.run(["pg_dump", "--no-owner", "--no-privileges", database_url],
                          capture_output=True, text=True, check=True).stdout


def make(src: Path, engine: str) -> Path:
    with tempfile.TemporaryDirectory() as work:
        data_dir = Path(work) / "data"
        database_url = f"sqlite:///{data_dir / 'devicecloud.db'}"
        if engine == "postgresql":
            import psycopg

            name = f"dc_fixture_{os.getpid()}"
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                admin.execute(f'CREATE DATABASE "{name}"')
            database_url = POSTGRES.rsplit("/", 1)[0] + "/" + name
        storage = ["--data-dir", str(data_dir), "--database-url", database_url]
        http_port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(src)}
        server = subprocess.Popen(
            [sys.executable, "-m", "devicecloud", "serve", "--host", "127.0.0.1",
             "--http-port", str(http_port), "--mqtt-port", str(_free_port()),
             "--log-level", "warning", *storage], env=env)
        url = f"http://127.0.0.1:{http_port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            made = _populate(url, src, storage)
        finally:
            server.terminate()
            server.wait(30)
        revision = _revision(database_url)
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / f"{revision}.{engine}.sql").write_text(_dump(engine, database_url, data_dir))
        (FIXTURES / f"{revision}.{engine}.json").write_text(json.dumps(made, indent=1) + "\n")
        if engine == "postgresql":
            import psycopg

            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return FIXTURES / f"{revision}.{engine}.sql"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    print(make(args.src.resolve(), args.engine))


if __name__ == "__main__":
    main()
