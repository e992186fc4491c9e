"""Naming, tagging, describing and deleting a device in the console: the list and the page show
it, the API sees the same, and only the owner can change it."""

from __future__ import annotations

import httpx
from support.clients import WsDevice
from support.console_client import ConsoleUser
from support.server import Server, random_mac


def test_a_name_and_tags_given_in_the_console_show_everywhere(server: Server) -> None:
    token = server.register()
    ada = ConsoleUser.sign_up(server)
    ada.bind(token)
    saved = ada.post(f"/console/devices/{token}/describe", name="  Greenhouse  ",
                     tags="garden, south,garden", description="by the door")
    assert ada.flash(saved) == "Saved."
    page = ada.get(f"/console/devices/{token}").text
    assert "<h1>Greenhouse" in page and "<title>Greenhouse" in page
    assert '<span class="tag">garden</span><span class="tag">south</span>' in page
    assert "by the door" in page
    listing = ada.get("/console/devices").text
    assert ">Greenhouse</a>" in listing and 'data-tags="garden south"' in listing

    key = ada.api_key()
    found = httpx.get(f"{server.url}/api/v1/devices", params={"tag": "south"},
                      headers={"Authorization": f"Bearer {key}"}).json()["items"]
    assert [(d["name"], d["tags"], d["description"]) for d in found] == [
        ("Greenhouse", ["garden", "south"], "by the door")]

    too_long = ada.post(f"/console/devices/{token}/describe", name="x" * 129, tags="",
                        description="")
    assert "longer than 128" in ada.flash(too_long)
    assert "<h1>Greenhouse" in ada.get(f"/console/devices/{token}").text  # nothing changed
    cleared = ada.post(f"/console/devices/{token}/describe", name="", tags="", description="")
    assert ada.flash(cleared) == "Saved."
    assert '<span class="tag">' not in ada.get(f"/console/devices/{token}").text

    bob = ConsoleUser.sign_up(server)
    refused = bob.post(f"/console/devices/{token}/describe", name="mine", tags="", description="")
    assert refused.status_code == 404


async def test_deleting_a_device_removes_it_with_its_data(server: Server) -> None:
    mac = random_mac()
    token = server.register(mac)
    ada, bob = ConsoleUser.sign_up(server), ConsoleUser.sign_up(server)
    ada.bind(token)
    device = await WsDevice.connect(server.ws_url, token)
    try:
        assert (await device.request(100, name="temp", value=20))["code"] == 200
        assert (await device.request(101, name="temp", value=21))["code"] == 200
        upload = httpx.post(f"{server.url}/api/v2/{token}/uploadFile",
                            data={"name": "photo", "deviceToken": token},
                            files={"file": ("cat.jpeg", b"\xff\xd8\xff" + b"j" * 200,
                                            "image/jpeg")}).json()
        photo = upload["data"]["value"]
        assert httpx.get(photo).status_code == 200
        assert (await device.recv_json())["cmd"] == 105  # told of the file
        assert bob.post(f"/console/devices/{token}/delete").status_code == 404
        page = ada.get(f"/console/devices/{token}").text
        assert f'action="/console/devices/{token}/delete"' in page  # behind a confirm step
        deleted = ada.post(f"/console/devices/{token}/delete")
        assert "is deleted, with its data" in ada.flash(deleted)

        answer = await device.request(104, name="temp")  # its connection is logged out
        assert answer["code"] == 500 and "not logged in" in answer["msg"], answer
    finally:
        await device.close()
    assert httpx.get(f"{server.url}/api/v2/{token}/list").json()["code"] == 500
    assert httpx.get(photo).status_code == 404
    assert token not in ada.get("/console/devices").text
    assert httpx.get(f"{server.url}/api/v1/devices",
                     headers={"Authorization": f"Bearer {ada.api_key()}"}).json()["items"] == []
    again = server.register(mac)  # registering again is a new device
    assert again != token
    assert httpx.get(f"{server.url}/api/v2/{again}/list").json()["data"]["rows"] == []


def test_a_field_s_unit_is_shown_beside_its_values_and_goes_with_it(server: Server) -> None:
    token = server.register()
    ada = ConsoleUser.sign_up(server)
    ada.bind(token)
    for value in (20.5, 21.5):
        httpx.post(f"{server.url}/api/v2/{token}/add", json={"name": "temp", "value": value})
    done = ada.post(f"/console/devices/{token}/fields/unit", name="temp", unit=" °C ")
    assert ada.flash(done) == "temp is now in °C."
    page = ada.get(f"/console/devices/{token}").text
    assert '<span class="f-value">21.5</span> <span class="f-unit">°C</span>' in page
    assert "20.5 \u2013 21.5 °C" in page  # the sparkline's range
    assert "at most 16 characters" in ada.flash(
        ada.post(f"/console/devices/{token}/fields/unit", name="temp", unit="x" * 17))
    assert "No field named" in ada.flash(
        ada.post(f"/console/devices/{token}/fields/unit", name="nope", unit="%"))
    assert ada.flash(ada.post(f"/console/devices/{token}/fields/delete", name="temp"))
    httpx.post(f"{server.url}/api/v2/{token}/add", json={"name": "temp", "value": 1})
    assert 'class="f-unit"' not in ada.get(f"/console/devices/{token}").text  # gone with it
