"""Who calls devicecloud's own API: the account whose `open_api_key` is in the
`Authorization: Bearer` header, counted under the `account.api` limit."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from devicecloud.core.accounts import Accounts
from devicecloud.core.errors import Unauthorized
from devicecloud.core.models import Account
from devicecloud.web.services import services

NO_KEY = "missing Authorization header: send `Authorization: Bearer <open_api_key>`"
NOT_BEARER = "the Authorization header must be `Bearer <open_api_key>`"
BAD_KEY = "unknown open_api_key in the Authorization header"


def bearer_key(connection: HTTPConnection) -> str:
    """The key of the `Authorization: Bearer <key>` header; Unauthorized if absent or another
    scheme."""
    header = connection.headers.get("authorization", "").strip()
    if not header:
        raise Unauthorized(NO_KEY)
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(NOT_BEARER)
    return key.strip()


async def _holder(accounts: Accounts, key: str) -> Account:
    try:
        return await accounts.by_api_key(key)
    except Unauthorized:
        raise Unauthorized(BAD_KEY) from None


async def account_of(connection: HTTPConnection) -> Account:
    """The calling account (Unauthorized, a 401, when the key is missing or unknown), after
    counting this request under `account.api` (TooMany, a 429, beyond it)."""
    running = services(connection)
    account = await _holder(running.accounts, bearer_key(connection))
    await running.limits.account_call(account.id)
    return account
