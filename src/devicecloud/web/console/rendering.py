"""The console's Jinja2 templates (autoescaped: whatever a device sent is shown as text) and
the filters they use."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from devicecloud import __version__
from devicecloud.web.console.forms import KINDS, kind_of, shown

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
_IMAGE_PATH = re.compile(r"/files/[0-9a-f]{32}/[^/]+\.(?:png|jpe?g|gif|bmp|webp)", re.IGNORECASE)


def when(ms: int | None) -> str:
    """Epoch milliseconds as UTC text (the browser shows local time instead)."""
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def mac_text(mac: str) -> str:
    return ":".join(mac[i:i + 2] for i in range(0, len(mac), 2)).upper()


def preview_path(data_type: str, value: Any) -> str:
    """For an image file stored here, the path to show it from (same origin); else ""."""
    if data_type != "file" or not isinstance(value, str):
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not _IMAGE_PATH.fullmatch(parts.path):
        return ""
    return parts.path


def row(record: dict[str, Any]) -> dict[str, Any]:
    """What a row of the fields table shows for one data record."""
    return {"name": record["name"], "text": shown(record["value"]),
            "data_type": record["dataType"], "updated": record["updateTime"],
            "kind": kind_of(record["dataType"], record["value"]),
            "preview": preview_path(record["dataType"], record["value"])}


BLANK_ROW = {"name": "", "text": "", "data_type": "", "updated": 0, "kind": "number",
             "preview": ""}


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, mac=mac_text, shown=shown)
    env.globals.update(version=__version__, kinds=KINDS, blank_row=BLANK_ROW)
    return env
