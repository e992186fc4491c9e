"""Whether an address handed to devices and browsers reaches this machine only."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_url(url: str) -> bool:
    """True if the URL's host is `localhost`, a `.localhost` name or a loopback address: links,
    QR codes and device settings holding it work on this machine only."""
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.endswith(".localhost")
