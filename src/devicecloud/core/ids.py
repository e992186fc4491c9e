"""Identifiers, MAC addresses and clocks."""

from __future__ import annotations

import re
import secrets
import time
from typing import TypeGuard

from devicecloud.core.errors import InvalidRequest

_HEX32 = re.compile(r"[0-9a-f]{32}")
_MAC_SEPARATORS = str.maketrans("", "", ":-. ")
_MAC = re.compile(r"[0-9a-f]{12}")
PROCESS_ID = secrets.token_hex(16)  # names this process to the others serving the fleet


def new_token() -> str:
    """A fresh 32-lowercase-hex identifier (device tokens, field ids, data tokens)."""
    return secrets.token_hex(16)


def is_token(text: object) -> TypeGuard[str]:
    """Whether `text` has the shape of a token: 32 lowercase hex characters."""
    return isinstance(text, str) and _HEX32.fullmatch(text) is not None


def normalise_mac(raw: object) -> str:
    """`AA:BB:CC:DD:EE:FF`, `AA-BB-...`, `aabbccddeeff` -> `aabbccddeeff`; else InvalidRequest."""
    if not isinstance(raw, str):
        raise InvalidRequest("mac must be a string of 12 hex digits")
    mac = raw.strip().lower().translate(_MAC_SEPARATORS)
    if not _MAC.fullmatch(mac):
        raise InvalidRequest(f"invalid mac: {raw[:40]!r}")
    return mac


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000
