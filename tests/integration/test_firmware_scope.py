"""Firmware images belong to accounts: `query_new_ota` offers a device only its own account's
images, known by its agent's api_key or, for unmodified firmware (which sends only `version`,
`bin_id` and `is_official`), by the address of its firmware socket. `bin_id` "0" works per
account, and a deleted image's bin_id taken by another account reaches none of the first
account's devices."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.espai import Firmware, Tenant, add_device, api, new_tenant
from support.polling import eventually
from support.server import Server, random_mac

IMAGE = b"\x7fELF" + bytes(range(256)) * 16


@pytest.fixture
def started(own_server: Server) -> Server:
    return own_server.start()


def upload(server: Server, tenant: Tenant, bin_id: str, version: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.post(
        f"{server.url}/firmware/upload", data={"bin_id": bin_id, "version": version},
        files={"file": ("fw.bin", IMAGE, "application/octet-stream")},
        headers={"authorization": tenant.open_api_key}).json()
    assert doc["success"] is True, doc
    return doc["data"]


def ota(server: Server, version: str = "1.0", bin_id: str = "0", **extra: str) -> dict[str, Any]:
    """What the official firmware asks (`auto_update`): version, bin_id, is_official only."""
    doc: dict[str, Any] = httpx.get(f"{server.url}/sdk/query_new_ota", params={
        "version": version, "bin_id": bin_id, "is_official": "0", **extra}).json()
    assert doc["success"] is True, doc
    return doc["data"]


def offered_soon(server: Server, expected: dict[str, Any], **extra: str) -> None:
    """Wait until the unmodified firmware's question gets `expected` (the socket's address is
    recorded just after it opens)."""
    eventually(lambda: ota(server, **extra) == expected, f"the answer {expected}")


NOTHING = {"latest": True, "bin_url": ""}


async def test_bin_id_zero_reaches_only_the_askers_account(started: Server) -> None:
    mine, theirs = new_tenant(started), new_tenant(started)
    attacker = upload(started, theirs, "0", "6.6.6")  # claims the firmware's default first
    assert ota(started) == NOTHING  # a device nobody knows is offered nothing
    own = upload(started, mine, "0", "1.1")  # "0" is every account's own
    mac = random_mac()
    assert add_device(started, mine, mac, bin_id="0")["success"] is True
    device = await Firmware.connect(started, mac, mine.api_key)
    offered_soon(started, {"latest": False, "bin_url": own["bin_url"]})
    assert ota(started, version="1.1") == {"latest": True, "bin_url": own["bin_url"]}
    assert ota(started, api_key=theirs.api_key) == {"latest": False,
                                                    "bin_url": attacker["bin_url"]}
    assert ota(started, api_key=mine.api_key)["bin_url"] == own["bin_url"]
    assert ota(started, api_key="0" * 32) == NOTHING

    # Deleting the image does not hand "0" to the other account: the device gets nothing.
    assert api(started, "/firmware/del", [{"id": own["id"]}], mine.open_api_key)["success"]
    offered_soon(started, NOTHING)
    again = upload(started, theirs, "0", "6.6.7")
    assert ota(started) == NOTHING
    assert ota(started, api_key=theirs.api_key)["bin_url"] == again["bin_url"]
    await device.close()


async def test_a_shared_address_of_two_accounts_offers_nothing(started: Server) -> None:
    first, second = new_tenant(started), new_tenant(started)
    image = upload(started, first, "0", "2.0")
    upload(started, second, "0", "3.0")
    mac_one, mac_two = random_mac(), random_mac()
    add_device(started, first, mac_one)
    add_device(started, second, mac_two)
    one = await Firmware.connect(started, mac_one, first.api_key)
    offered_soon(started, {"latest": False, "bin_url": image["bin_url"]})
    # A device of another account behind the same address: which account asks is unknown.
    two = await Firmware.connect(started, mac_two, second.api_key)
    offered_soon(started, NOTHING)
    # Naming the device narrows it down; the agent's key settles it.
    assert ota(started, device_id=mac_one)["bin_url"] == image["bin_url"]
    assert ota(started, device_id=mac_two)["latest"] is False
    assert ota(started, device_id="not a mac") == NOTHING
    await one.close()
    await two.close()


async def test_a_device_rebooting_to_update_is_still_known(started: Server) -> None:
    tenant = new_tenant(started)
    image = upload(started, tenant, "0", "4.0")
    mac = random_mac()
    add_device(started, tenant, mac)
    device = await Firmware.connect(started, mac, tenant.api_key)
    offered_soon(started, {"latest": False, "bin_url": image["bin_url"]})
    await device.close()
    assert ota(started) == {"latest": False, "bin_url": image["bin_url"]}
    # Unbound, it is nobody's device any more.
    assert api(started, "/devices/unbind", {"api_key": tenant.api_key, "device_id": mac},
               tenant.open_api_key)["success"] is True
    assert ota(started) == NOTHING
