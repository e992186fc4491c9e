"""The web console: accounts, binding devices, live data and edits pushed to devices, and the
ESP-AI agents and firmware images of an account."""

from starlette.routing import BaseRoute

from devicecloud.web.console import agents
from devicecloud.web.console import routes as pages
from devicecloud.web.console.state import Console


def routes() -> list[BaseRoute]:
    return [*agents.routes(), *pages.routes()]


__all__ = ["Console", "routes"]
