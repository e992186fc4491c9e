"""Accounts: sign-up, password checks and changes, profiles, the session epoch that ends every
console session at once, and the `open_api_key` of the management API."""

from __future__ import annotations

import asyncio
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from devicecloud.core.errors import Conflict, InvalidRequest, Unauthorized
from devicecloud.core.ids import is_token, new_token, now_ms
from devicecloud.core.models import Account
from devicecloud.core.ports import AccountStore

MIN_PASSWORD_LENGTH = 8
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_hasher = PasswordHasher()
# A hash to verify against when the email is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def normalise_email(raw: object) -> str:
    if not isinstance(raw, str) or len(raw) > 254 or not _EMAIL.fullmatch(raw.strip()):
        raise InvalidRequest("enter a valid email address")
    return raw.strip().lower()


def _profile_text(raw: object, what: str, limit: int) -> str:
    if not isinstance(raw, str):
        raise InvalidRequest(f"{what} must be text")
    text = raw.strip()
    if len(text) > limit:
        raise InvalidRequest(f"{what} longer than {limit} characters")
    return text


def _new_password(raw: object) -> str:
    if not isinstance(raw, str) or len(raw) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return raw


class Accounts:
    """Creating accounts and checking who is who. Password hashing runs off the event loop."""

    def __init__(self, store: AccountStore) -> None:
        self.store = store

    async def create(self, email: object, password: object, display_name: object = "",
                     phone: object = "") -> Account:
        address = normalise_email(email)
        password_hash = await asyncio.to_thread(_hasher.hash, _new_password(password))
        account = await self.store.create_account(
            address, password_hash, _profile_text(display_name, "display name", 100),
            _profile_text(phone, "phone", 32), new_token(), now_ms())
        if account is None:
            raise Conflict("an account with this email already exists")
        return account

    async def authenticate(self, email: object, password: object) -> Account:
        """The account if the password is right; Unauthorized otherwise (same message either
        way, so the answer does not tell whether the email exists)."""
        found = None
        if isinstance(email, str):
            found = await self.store.account_login(email.strip().lower())
        password_hash = found[1] if found else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, password_hash, str(password))
        except (VerificationError, InvalidHashError):
            found = None
        if found is None:
            raise Unauthorized("wrong email or password")
        return found[0]

    async def by_id(self, account_id: int) -> Account | None:
        return await self.store.account_by_id(account_id)

    async def for_session(self, account_id: int, epoch: str) -> Account | None:
        """The account of a session cookie, unless its sessions were ended since (`epoch` is
        then not the account's)."""
        account = await self.store.account_by_id(account_id)
        return account if account is not None and account.session_epoch == epoch else None

    async def change_password(self, account: Account, password: object) -> Account:
        """Set a new password and end every session of the account (see `end_sessions`)."""
        password_hash = await asyncio.to_thread(_hasher.hash, _new_password(password))
        account.session_epoch = new_token()
        await self.store.update_account(
            account.id, {"password_hash": password_hash, "session_epoch": account.session_epoch},
            now_ms())
        return account

    async def end_sessions(self, account: Account) -> Account:
        """Give the account a new session epoch: every session cookie made before stops working."""
        account.session_epoch = new_token()
        await self.store.update_account(account.id, {"session_epoch": account.session_epoch},
                                        now_ms())
        return account

    async def by_api_key(self, key: object) -> Account:
        """The account whose `open_api_key` this is (an optional `Bearer ` prefix is allowed)."""
        if isinstance(key, str) and key.startswith("Bearer "):
            key = key[len("Bearer "):]
        account = await self.store.account_by_api_key(key) if is_token(key) else None
        if account is None:
            raise Unauthorized("unknown open_api_key")
        return account

    async def update_profile(self, account: Account, display_name: object,
                             phone: object) -> Account:
        account.display_name = _profile_text(display_name, "display name", 100)
        account.phone = _profile_text(phone, "phone", 32)
        await self.store.update_account(
            account.id, {"display_name": account.display_name, "phone": account.phone}, now_ms())
        return account

    async def regenerate_api_key(self, account: Account) -> Account:
        account.open_api_key = new_token()
        await self.store.update_account(account.id, {"open_api_key": account.open_api_key},
                                        now_ms())
        return account
