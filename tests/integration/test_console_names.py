"""Naming, tagging and describing a device in the console: the list and the page show it, the
API sees the same, and only the owner can change it."""

from __future__ import annotations

import httpx
from support.console_client import ConsoleUser
from support.server import Server


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
