"""The web console: accounts, binding devices, live data and edits pushed to devices."""

from devicecloud.web.console.routes import routes
from devicecloud.web.console.state import Console

__all__ = ["Console", "routes"]
