"""Two processes on one PostgreSQL racing for the same row: every answer is right.

Two accounts adding one MAC through ESP-AI `/devices/add` at the same moment, on two processes:
exactly one is told it bound the device, the other that it is bound elsewhere, and the device is
the winner's. One new field name added through two processes at once becomes `name` and
`name(1)`, both answered 200; the REST `add` (add or modify) of one new name leaves one field.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import WsDevice
from support.espai import Tenant, colon_mac, listed, new_tenant
from support.server import CLUSTER_POSTGRES, Server, postgres_database, postgres_problem, random_mac
from support.services import PrivateRedis

from devicecloud.core.espai import values as v

ROUNDS = 30

pytestmark = [
    # Races between processes need a shared PostgreSQL, on the SQLite run of the suite too.
    pytest.mark.skipif(bool(postgres_problem()), reason=postgres_problem() or "-"),
    pytest.mark.skipif(shutil.which("redis-server") is None,
                       reason="redis-server is not installed"),
]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    env = {"DEVICECLOUD_DATABASE_URL": postgres_database(data, CLUSTER_POSTGRES)}
    servers = [Server(data, extra_args=("--bus-url", redis.url), env=dict(env))
               for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers[0], servers[1]
        for server in servers:
            assert server.stop() == 0, server.log()
            assert "Traceback" not in server.log(), server.log()
    finally:
        for server in servers:
            if server.process is not None and server.process.poll() is None:
                server.stop(signal.SIGKILL)
        redis.stop()


async def _add_device(http: httpx.AsyncClient, server: Server, tenant: Tenant,
                      mac: str) -> Any:
    body = {"version": "1.22.34", "bin_id": "0", "device_id": colon_mac(mac),
            "api_key": tenant.api_key, "wifi_ssid": "lab", "wifi_pwd": "secret-password"}
    return (await http.post(f"{server.url}/devices/add", json=body)).json()


async def test_two_accounts_adding_one_mac_at_once_exactly_one_binds(
        pair: tuple[Server, Server]) -> None:
    first, second = pair
    tenants = new_tenant(first), new_tenant(second)
    wins = [0, 0]
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(ROUNDS):
            mac = random_mac()
            answers = await asyncio.gather(_add_device(http, first, tenants[0], mac),
                                           _add_device(http, second, tenants[1], mac))
            won = [answer["success"] is True for answer in answers]
            assert won.count(True) == 1, answers
            loser = answers[won.index(False)]
            assert loser["message"] == v.BOUND_ELSEWHERE, answers
            winner = won.index(True)
            assert answers[winner]["message"] == v.BOUND, answers
            wins[winner] += 1
            for index, tenant in enumerate(tenants):
                rows = listed((first, second)[index], tenant, device_id=colon_mac(mac))["data"]
                assert len(rows) == (1 if index == winner else 0), (index, winner, rows)
    print(f"binds won: first process {wins[0]}, second {wins[1]} of {ROUNDS}")


async def _answer(device: WsDevice, cmd: int) -> Any:
    """The answer to the request just sent (pushes of the other process's change may come first)."""
    while True:
        message = await device.recv_json(timeout=10)
        if message.get("cmd") == cmd:
            return message


async def test_one_new_name_added_through_two_processes_at_once(
        pair: tuple[Server, Server]) -> None:
    token = pair[0].register()
    devices = [await WsDevice.connect(server.ws_url, token) for server in pair]
    for round_ in range(ROUNDS):
        name = f"n{round_}"
        for device in devices:
            await device.send({"deviceToken": token,
                               "body": {"requestType": 100, "name": name, "value": round_}})
        answers = [await _answer(device, 100) for device in devices]
        assert [answer["code"] for answer in answers] == [200, 200], answers
        assert sorted(answer["body"]["name"] for answer in answers) == [name, f"{name}(1)"]
    listed_names = [record["name"] for record in (await _answer_of(devices[1], 103))["body"]]
    assert len(listed_names) == 2 * ROUNDS == len(set(listed_names))
    for device in devices:
        await device.close()


async def _answer_of(device: WsDevice, request_type: int) -> Any:
    await device.send({"deviceToken": device.token, "body": {"requestType": request_type}})
    return await _answer(device, request_type)


async def test_one_new_name_set_through_two_processes_at_once_is_one_field(
        pair: tuple[Server, Server]) -> None:
    token = pair[0].register()
    async with httpx.AsyncClient(timeout=10) as http:
        for round_ in range(ROUNDS):
            replies = await asyncio.gather(*(
                http.post(f"{server.url}/api/v2/{token}/add",
                          json={"name": f"s{round_}", "value": index})
                for index, server in enumerate(pair)))
            assert [reply.json()["code"] for reply in replies] == [200, 200], \
                [reply.text for reply in replies]
        names = [row["name"] for row in
                 (await http.get(f"{pair[1].url}/api/v2/{token}/list")).json()["data"]["rows"]]
    assert sorted(names) == sorted(f"s{round_}" for round_ in range(ROUNDS))
