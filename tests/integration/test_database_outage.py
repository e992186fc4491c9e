"""PostgreSQL going away under a running devicecloud: a restarted server (every connection cut) is
reconnected to without a failed request; a database that is gone gets clear errors, the process
and the device connections survive, and nothing is acknowledged that was not committed."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from support.clients import WsDevice
from support.polling import eventually
from support.server import POSTGRES_ADMIN_URL, Server, postgres_database

ADMIN_URL = POSTGRES_ADMIN_URL or f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"


def _unreachable() -> str:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as problem:
        return f"PostgreSQL is not reachable at {ADMIN_URL} ({problem})"
    return ""


pytestmark = pytest.mark.skipif(bool(_unreachable()), reason=_unreachable() or "-")


@pytest.fixture
def on_postgres(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    data = tmp_path / "data"
    url = postgres_database(data, ADMIN_URL)
    server = Server(data, env={"DEVICECLOUD_DATABASE_URL": url}).start()
    yield server, url.rsplit("/", 1)[1]
    if server.process is not None and server.process.poll() is None:
        server.stop()


def _admin(sql: str, name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql, (name,) if "%s" in sql else ())


def _cut_connections(database: str) -> None:
    """What a PostgreSQL restart does to devicecloud's connections, at a moment when they are idle
    (a cut in the middle of a transaction fails that transaction: see the next test)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        eventually(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname "
                                         "= %s AND state <> 'idle'", (database,)).fetchone()
                   == (0,), "devicecloud's connections idle", every=0.01)
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))


async def test_a_restarted_database_is_reconnected_without_a_failed_request(
        on_postgres: tuple[Server, str]) -> None:
    server, database = on_postgres
    token, other = server.register(), server.register()
    device = await WsDevice.connect(server.ws_url, token)
    assert (await device.request(100, name="n", value=1))["code"] == 200
    for value in range(2, 6):
        _cut_connections(database)
        assert (await device.request(101, name="n", value=value))["code"] == 200
        _cut_connections(database)
        reply = httpx.post(f"{server.url}/api/v2/{other}/add", json={"name": "m", "value": value})
        assert reply.json()["code"] == 200
    assert (await device.request(104, name="n"))["body"]["value"] == 5
    stored = httpx.get(f"{server.url}/api/v2/{other}/dataByKey/m").json()
    assert stored["data"]["value"] == 5
    await device.close()
    assert "database connection lost; connecting again" in server.log()
    assert server.stop() == 0, server.log()


async def test_a_database_that_is_gone_gets_clear_errors_and_nothing_breaks(
        on_postgres: tuple[Server, str]) -> None:
    server, database = on_postgres
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    assert (await device.request(100, name="n", value=1))["code"] == 200
    _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false', database)
    try:
        _cut_connections(database)
        refused = await device.request(101, name="n", value=2)
        assert refused["code"] == 500 and refused["msg"] == "the database is unavailable; try again"
        rest = httpx.post(f"{server.url}/api/v2/{token}/add", json={"name": "n", "value": 3})
        assert rest.status_code == 503
        assert rest.json() == {"code": 500, "msg": "the database is unavailable; try again",
                               "data": None}
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true', database)
    assert (await device.request(104, name="n"))["body"]["value"] == 1  # nothing half-done
    assert (await device.request(101, name="n", value=4))["code"] == 200
    await device.close()
    assert server.stop() == 0, server.log()
