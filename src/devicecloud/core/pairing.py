"""Pairing codes: a device asks for a short code (EzData 112) and its owner-to-be types it into
the console to bind it. A code is 8 characters of Crockford's base32 (40 random bits), shown
grouped as `K7QM-4XPA`; it lives 10 minutes, works once, and a device has at most one: asking
again replaces the earlier code. Typed codes are read as Crockford's base32 is: in any case, with
or without the dash and spaces, `I` and `L` as 1 and `O` as 0."""

from __future__ import annotations

import re
import secrets

from devicecloud.core.errors import Conflict, InvalidRequest, NotFound
from devicecloud.core.models import Device
from devicecloud.core.ports import DeviceStore

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PAIR_CODE_LENGTH = 8
PAIR_CODE_LIFETIME_MS = 10 * 60 * 1000
_ISSUE_ATTEMPTS = 20
_CODE = re.compile(f"[{ALPHABET}]{{{PAIR_CODE_LENGTH}}}")
_AS_TYPED = str.maketrans({" ": None, "-": None, "I": "1", "L": "1", "O": "0"})


def new_pair_code() -> str:
    """Eight random characters of the alphabet, ungrouped (as stored)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(PAIR_CODE_LENGTH))


def shown(code: str) -> str:
    """The code as a device shows it: `K7QM-4XPA`."""
    half = PAIR_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def normalise_pair_code(raw: object) -> str:
    """The code as stored; InvalidRequest unless it reads as 8 characters of the alphabet."""
    text = raw if isinstance(raw, str) and raw.isascii() else ""
    code = text.strip().upper().translate(_AS_TYPED)
    if not _CODE.fullmatch(code):
        raise InvalidRequest(f"a pairing code has {PAIR_CODE_LENGTH} letters and digits, "
                             "like K7QM-4XPA")
    return code


async def issue(store: DeviceStore, device: Device, now: int) -> str:
    """A fresh code for `device`, as shown, valid until `now` + 10 minutes; it replaces the
    device's older code. Codes are unique among the live ones."""
    for _ in range(_ISSUE_ATTEMPTS):
        code = new_pair_code()
        if await store.put_pair_code(code, device.id, now + PAIR_CODE_LIFETIME_MS, now):
            return shown(code)
    raise Conflict("no pairing code is free right now; ask again in a moment")


async def redeem(store: DeviceStore, raw: object, now: int) -> str:
    """The token of the device this live code was issued to; the code is used up."""
    token = await store.take_pair_code(normalise_pair_code(raw), now)
    if token is None:
        raise NotFound("this pairing code is unknown, used or expired; "
                       "ask the device for a new one")
    return token
