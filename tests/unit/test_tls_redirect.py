"""Where `--http-redirect` sends a page: the same host and path on the HTTPS port."""

from __future__ import annotations

import pytest

from devicecloud.config import Settings
from devicecloud.web.redirect import https_location, is_page


@pytest.mark.parametrize(("host", "port", "public_url", "expected"), [
    ("cloud.example.org:8000", 8443, "", "https://cloud.example.org:8443/console?a=1"),
    ("cloud.example.org", 443, "", "https://cloud.example.org/console?a=1"),
    ("[2001:db8::1]:8000", 8443, "", "https://[2001:db8::1]:8443/console?a=1"),
    ("192.168.1.20:8000", 8443, "", "https://192.168.1.20:8443/console?a=1"),
    ("", 8443, "", "https://localhost:8443/console?a=1"),
    ("10.0.0.5:8000", 8443, "https://cloud.example.org", "https://cloud.example.org/console?a=1"),
])
def test_the_same_page_on_the_https_port(host: str, port: int, public_url: str,
                                         expected: str) -> None:
    settings = Settings(https_port=port, public_url=public_url)
    scope = {"path": "/console", "raw_path": b"/console", "query_string": b"a=1"}
    assert https_location(settings, scope, host) == expected


def test_pages_are_the_console_and_the_docs_not_device_calls() -> None:
    assert all(map(is_page, ["/", "/console", "/console/devices/x", "/docs"]))
    assert not any(map(is_page, ["/api/v2/device/registerMac", "/ws", "/files/a/b", "/healthz",
                                 "/.well-known/acme-challenge/t", "/sdk/position"]))
