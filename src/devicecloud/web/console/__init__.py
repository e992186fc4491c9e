"""The web console: accounts, binding devices, live data and edits pushed to devices, and the
ESP-AI agents and firmware images of an account."""

from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from devicecloud.web.console import account_pages, agents, device_pages, field_pages
from devicecloud.web.console.rendering import STATIC
from devicecloud.web.console.state import Console

GET, POST, ANY = ("GET",), ("POST",), ("GET", "POST")
DEVICE = "/console/devices/{token}"
AGENT = "/console/agents/{agent_id}"


def routes() -> list[BaseRoute]:
    """Every URL of the console."""
    return [
        Route("/", account_pages.root, methods=GET),
        Route("/console", account_pages.home, methods=GET),
        Route("/console/signup", account_pages.signup, methods=ANY),
        Route("/console/login", account_pages.login, methods=ANY),
        Route("/console/logout", account_pages.logout, methods=POST),
        Route("/console/account", account_pages.account_page, methods=ANY),
        Route("/console/account/api-key", account_pages.new_api_key, methods=POST),
        Route("/console/account/password", account_pages.change_password, methods=POST),
        Route("/console/account/logout-everywhere", account_pages.logout_everywhere,
              methods=POST),
        Route("/console/devices", device_pages.devices, methods=GET),
        Route("/console/devices/add", device_pages.add_by_token, methods=POST),
        Route("/console/devices/pair", device_pages.add_by_pair_code, methods=POST),
        Route("/console/devices/allow", device_pages.add_by_mac, methods=POST),
        Route("/console/devices/{token}/describe", device_pages.describe, methods=POST),
        Route("/console/devices/{token}/delete", device_pages.delete, methods=POST),
        Route(DEVICE, field_pages.group, methods=GET),
        Route(f"{DEVICE}/fields/add", field_pages.add_field, methods=POST),
        Route(f"{DEVICE}/fields/edit", field_pages.edit_field, methods=POST),
        Route(f"{DEVICE}/fields/unit", field_pages.set_unit, methods=POST),
        Route(f"{DEVICE}/fields/delete", field_pages.delete_field, methods=POST),
        Route(f"{DEVICE}/history", field_pages.history, methods=GET),
        Route(f"{DEVICE}/release", device_pages.release, methods=POST),
        Route(f"{DEVICE}/keep", device_pages.keep, methods=POST),
        Route("/console/bind/{token}", device_pages.bind_link, methods=ANY),
        Route("/console/bind/{token}/qr.png", device_pages.bind_qr, methods=GET),
        WebSocketRoute("/console/live", device_pages.fleet),
        WebSocketRoute("/console/live/{token}", field_pages.live),
        Route("/console/agents", agents.agents, methods=GET),
        Route("/console/agents/add", agents.add_agent, methods=POST),
        Route("/console/agents/wifi-pwd", agents.wifi_pwd_choice, methods=POST),
        Route(f"{AGENT}/edit", agents.edit_agent, methods=POST),
        Route(f"{AGENT}/key", agents.new_agent_key, methods=POST),
        Route(f"{AGENT}/delete", agents.delete_agent, methods=POST),
        Route("/console/firmware/upload", agents.upload_firmware, methods=POST),
        Route("/console/firmware/{firmware_id}/delete", agents.delete_firmware, methods=POST),
        Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
    ]


__all__ = ["Console", "routes"]
