"""Each sentence of docs/security.md, tried as an attacker would: what a MAC, a token, a dataToken
and an open_api_key allow, and what they do not."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from support.clients import WsDevice
from support.console_client import ConsoleUser
from support.espai import add_device, api, listed, new_tenant
from support.server import Server, random_mac


def _register(server: Server, mac: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v2/device/registerMac",
                      json={"deviceType": "basic", "mac": mac})


def _release(server: Server, token: str) -> dict[str, object]:
    doc: dict[str, object] = httpx.post(
        f"{server.url}/api/v2/device/releaseUser/{token}", json={}).json()
    return doc


BURST = 20


@pytest.fixture
def guarded(tmp_path: Path) -> Server:
    """A server of its own (the registration limit counts per address, and tests share
    127.0.0.1), with a smaller burst than the default to keep the test short."""
    return Server(tmp_path / "data", extra_args=("--limit", f"ip.register=2/s:{BURST}")).start()


def test_a_mac_gets_the_token_but_not_at_wire_speed(guarded: Server) -> None:
    mac = random_mac()
    token = guarded.register(mac)
    owner = ConsoleUser.sign_up(guarded)
    owner.bind(token)
    assert _register(guarded, mac).json()["data"] == token  # as real firmware needs at boot
    answers = [_register(guarded, random_mac()) for _ in range(BURST + 5)]
    refused = [reply for reply in answers if reply.status_code == 429]
    assert refused, "one address cannot sweep MACs for tokens"
    assert refused[0].json()["code"] == 500
    assert refused[0].json()["msg"].startswith("rate limited: ip.register 2/s, retry in ")
    assert int(refused[0].headers["retry-after"]) >= 1
    guarded.stop()


def test_a_token_cannot_take_a_bound_device(server: Server) -> None:
    token = server.register()
    owner, thief = ConsoleUser.sign_up(server), ConsoleUser.sign_up(server)
    owner.bind(token)
    assert "bound to another account" in thief.flash(thief.bind(token))
    asked = _release(server, token)
    assert asked["code"] == 200 and "owner confirms" in str(asked["data"])
    # Nothing changed: the owner still has it, the thief still cannot bind it.
    assert owner.get(f"/console/devices/{token}").status_code == 200
    assert "bound to another account" in thief.flash(thief.bind(token))
    page = owner.get(f"/console/devices/{token}").text
    assert "This device asked to be released" in page


def test_the_owner_keeps_a_device_and_further_requests_are_refused(server: Server) -> None:
    token = server.register()
    owner = ConsoleUser.sign_up(server)
    owner.bind(token)
    _release(server, token)
    owner.get(f"/console/devices/{token}")
    assert "stays yours" in owner.flash(owner.post(f"/console/devices/{token}/keep"))
    assert "asked to be released" not in owner.get(f"/console/devices/{token}").text
    again = _release(server, token)
    assert again["code"] == 500 and "owner keeps this device" in str(again["msg"])
    assert owner.get(f"/console/devices/{token}").status_code == 200


def test_the_owner_confirms_a_release(server: Server) -> None:
    token = server.register()
    owner, newcomer = ConsoleUser.sign_up(server), ConsoleUser.sign_up(server)
    owner.bind(token)
    _release(server, token)
    owner.get(f"/console/devices/{token}")
    assert "Device released" in owner.flash(owner.post(f"/console/devices/{token}/release"))
    assert newcomer.bind(token).status_code == 303
    assert newcomer.get(f"/console/devices/{token}").status_code == 200


async def test_an_unanswered_release_takes_effect_after_its_delay(server: Server) -> None:
    from devicecloud.core.service import RELEASE_AFTER_MS

    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    owner = ConsoleUser.sign_up(server)
    owner.bind(token)
    assert (await device.recv_json(5))["cmd"] == 106
    _release(server, token)
    # As if the owner had not answered for a day: the request is dated back, then swept.
    _date_request_back(server, token, RELEASE_AFTER_MS + 1000)
    newcomer = ConsoleUser.sign_up(server)
    assert newcomer.bind(token).status_code == 303  # due releases are carried out before a bind
    assert newcomer.get(f"/console/devices/{token}").status_code == 200
    assert owner.get(f"/console/devices/{token}").status_code == 404
    await device.close()


def _date_request_back(server: Server, token: str, by_ms: int) -> None:
    import sqlalchemy

    url = server.env.get("DEVICECLOUD_DATABASE_URL") or \
        f"sqlite:///{server.data_dir}/devicecloud.db"
    if url.startswith(("postgresql:", "postgres:")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        done = conn.execute(sqlalchemy.text(
            "UPDATE devices SET release_requested_at = release_requested_at - :by "
            "WHERE token = :token AND release_requested_at IS NOT NULL"),
            {"by": by_ms, "token": token})
        assert done.rowcount == 1
    engine.dispose()


def test_a_token_acts_as_the_device_and_sees_nothing_of_its_owner(server: Server) -> None:
    token = server.register()
    owner = ConsoleUser.sign_up(server, name="Ada")
    owner.bind(token)
    other = server.register()
    owner.bind(other)
    httpx.post(f"{server.url}/api/v2/{other}/add", json={"name": "private", "value": 7})
    done = httpx.post(f"{server.url}/api/v2/{token}/add", json={"name": "t", "value": 1}).json()
    assert done["code"] == 200
    listing = httpx.get(f"{server.url}/api/v2/{token}/list").text
    assert owner.email not in listing and "private" not in listing and other not in listing
    stranger = httpx.Client(base_url=server.url)  # the token alone opens no console page
    assert stranger.get(f"/console/devices/{token}").status_code in (303, 404)


def test_a_data_token_reads_one_public_field_only(server: Server) -> None:
    token = server.register()
    add = httpx.post(f"{server.url}/api/v2/{token}/add",
                     json={"name": "open", "value": 1, "permissions": "1"}).json()
    closed = httpx.post(f"{server.url}/api/v2/{token}/add",
                        json={"name": "closed", "value": 2}).json()
    public, private = add["data"]["dataToken"], closed["data"]["dataToken"]
    assert httpx.get(f"{server.url}/api/v2/{public}/data").json()["data"]["value"] == 1
    assert httpx.get(f"{server.url}/api/v2/{public}/history").json()["code"] == 200
    assert httpx.get(f"{server.url}/api/v2/{private}/data").json()["code"] == 500
    as_device = httpx.post(f"{server.url}/api/v2/{public}/add", json={"name": "x", "value": 1})
    assert as_device.json()["code"] == 500  # not a device token
    assert httpx.get(f"{server.url}/api/v2/{public}/list").json()["code"] == 500


def test_an_open_api_key_reaches_its_own_accounts_devices_only(server: Server) -> None:
    mine, theirs = new_tenant(server), new_tenant(server)
    mac, their_mac = random_mac(), random_mac()
    add_device(server, mine, mac)
    add_device(server, theirs, their_mac)
    rows = listed(server, mine)["data"]
    assert len(rows) == 1 and rows[0]["device_id"].replace(":", "").lower() == mac.lower()
    their_id = listed(server, theirs)["data"][0]["id"]
    changed = api(server, "/devices/update", {"id": their_id, "name": "mine now"},
                  mine.open_api_key)
    assert changed["success"] is False
    gone = api(server, "/devices/del", [{"id": their_id}], mine.open_api_key)
    assert gone["success"] is False
    assert listed(server, theirs)["data"][0]["id"] == their_id
