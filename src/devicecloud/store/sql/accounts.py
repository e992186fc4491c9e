"""Accounts: creating one, finding one (by id, API key, or email with its password hash),
changing one."""

from __future__ import annotations

from devicecloud.core.models import Account
from devicecloud.store.connection import Connection
from devicecloud.store.sql.base import SqlPart
from devicecloud.store.sql.columns import update_columns

_ACCOUNT_COLUMNS = "id, email, display_name, phone, open_api_key, created_at, session_epoch"
_ACCOUNT_CHANGES = frozenset({"display_name", "phone", "open_api_key", "password_hash",
                              "session_epoch"})


def _create_account(conn: Connection, email: str, password_hash: str, display_name: str,
                    phone: str, open_api_key: str, now: int) -> Account | None:
    row = conn.execute(
        "INSERT INTO accounts (email, password_hash, display_name, phone, open_api_key, "
        f"created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING "
        f"RETURNING {_ACCOUNT_COLUMNS}",
        (email, password_hash, display_name, phone, open_api_key, now, now)).fetchone()
    return Account(*row) if row else None


def _account_login(conn: Connection, email: str) -> tuple[Account, str] | None:
    row = conn.execute(f"SELECT {_ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE email = ?",
                       (email,)).fetchone()
    return (Account(*row[:-1]), row[-1]) if row else None


def _account_where(conn: Connection, column: str, value: object) -> Account | None:
    row = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE {column} = ?",
                       (value,)).fetchone()
    return Account(*row) if row else None


class SqlAccounts(SqlPart):
    """The `AccountStore` port."""

    async def create_account(self, email: str, password_hash: str, display_name: str,
                             phone: str, open_api_key: str, now: int) -> Account | None:
        return await self._writer.call(_create_account, email, password_hash, display_name,
                                       phone, open_api_key, now)

    async def account_login(self, email: str) -> tuple[Account, str] | None:
        return await self._reader.call(_account_login, email)

    async def account_by_id(self, account_id: int) -> Account | None:
        return await self._reader.call(_account_where, "id", account_id)

    async def account_by_api_key(self, open_api_key: str) -> Account | None:
        return await self._reader.call(_account_where, "open_api_key", open_api_key)

    async def update_account(self, account_id: int, changes: dict[str, str], now: int) -> None:
        await self._writer.call(update_columns, "accounts", _ACCOUNT_CHANGES, account_id,
                                changes, now)
