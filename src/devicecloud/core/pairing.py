"""Pairing codes: a device asks for a short code (EzData 112) and its owner-to-be types it into
the console to bind it. A code has 6 digits, lives 10 minutes, works once, and a device has at most
one: asking again replaces the earlier code."""

from __future__ import annotations

import re
import secrets

from devicecloud.core.errors import Conflict, InvalidRequest, NotFound
from devicecloud.core.models import Device
from devicecloud.core.ports import Store

PAIR_CODE_DIGITS = 6
PAIR_CODE_LIFETIME_MS = 10 * 60 * 1000
_ISSUE_ATTEMPTS = 20
_CODE = re.compile(f"[0-9]{{{PAIR_CODE_DIGITS}}}")
_SEPARATORS = str.maketrans("", "", " -")


def new_pair_code() -> str:
    """Six random decimal digits (leading zeros kept)."""
    return f"{secrets.randbelow(10 ** PAIR_CODE_DIGITS):0{PAIR_CODE_DIGITS}d}"


def normalise_pair_code(raw: object) -> str:
    """The code as typed, without spaces or dashes; InvalidRequest unless it is 6 digits."""
    code = raw.strip().translate(_SEPARATORS) if isinstance(raw, str) else ""
    if not _CODE.fullmatch(code):
        raise InvalidRequest(f"a pairing code has {PAIR_CODE_DIGITS} digits")
    return code


async def issue(store: Store, device: Device, now: int) -> str:
    """A fresh code for `device`, valid until `now` + 10 minutes; it replaces the device's older
    code. Codes are unique among the live ones."""
    for _ in range(_ISSUE_ATTEMPTS):
        code = new_pair_code()
        if await store.put_pair_code(code, device.id, now + PAIR_CODE_LIFETIME_MS, now):
            return code
    raise Conflict("no pairing code is free right now; ask again in a moment")


async def redeem(store: Store, raw: object, now: int) -> str:
    """The token of the device this live code was issued to; the code is used up."""
    token = await store.take_pair_code(normalise_pair_code(raw), now)
    if token is None:
        raise NotFound("this pairing code is unknown, used or expired; "
                       "ask the device for a new one")
    return token
