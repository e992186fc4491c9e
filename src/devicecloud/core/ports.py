"""The small interfaces the core needs from the outside: a store, a bus and a blob store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from devicecloud.core.events import Event
from devicecloud.core.models import Account, Device, Field, HistoryEntry, StoredFile


class Store(Protocol):
    """Durable records. Every write returns only after it is committed."""

    async def register_mac(self, mac: str, device_type: str, token: str, now: int) -> Device:
        """The device with this MAC (created with `token` if new)."""
        ...

    async def device_by_token(self, token: str) -> Device | None: ...

    async def set_owner(self, device_id: int, owner_id: int | None, now: int) -> None: ...

    async def bind_device(self, device_id: int, owner_id: int, now: int) -> bool:
        """Make `owner_id` the device's owner unless another account owns it; True if it does."""
        ...

    async def devices_of(self, owner_id: int) -> list[Device]: ...

    async def create_account(self, email: str, password_hash: str, display_name: str,
                             phone: str, open_api_key: str, now: int) -> Account | None:
        """A new account; None if the email is taken."""
        ...

    async def account_login(self, email: str) -> tuple[Account, str] | None:
        """The account with this email and its password hash."""
        ...

    async def account_by_id(self, account_id: int) -> Account | None: ...

    async def account_by_api_key(self, open_api_key: str) -> Account | None: ...

    async def update_account(self, account_id: int, changes: dict[str, str], now: int) -> None:
        """Set some of `display_name`, `phone`, `open_api_key`, `password_hash`."""
        ...

    async def set_downlink_limit(self, device_id: int, limit: int | None) -> None:
        """The largest message the device accepts from us (None: no limit)."""
        ...

    async def touch(self, device_id: int, now: int) -> None:
        """Record that the device was seen at `now`."""
        ...

    async def add_field(self, device_id: int, name: str, value: Any, data_type: str,
                        permissions: str, ids: tuple[str, str], now: int) -> Field:
        """Insert a field; a taken name becomes `name(1)`, `name(2)`, ..."""
        ...

    async def modify_field(self, device_id: int, name: str, value: Any, data_type: str | None,
                           now: int) -> Field | None:
        """Set an existing field's value (and type if given); None if no such name."""
        ...

    async def upsert_field(self, device_id: int, name: str, value: Any, data_type: str,
                           permissions: str, ids: tuple[str, str],
                           now: int) -> tuple[Field, bool]:
        """Modify the field of that name, or add it; True when it was added."""
        ...

    async def delete_field(self, device_id: int, name: str) -> Field | None: ...

    async def get_field(self, device_id: int, name: str) -> Field | None: ...

    async def list_fields(self, device_id: int) -> list[Field]: ...

    async def field_by_data_token(self, data_token: str) -> Field | None: ...

    async def history(self, field_id: str, limit: int,
                      offset: int) -> tuple[list[HistoryEntry], int]:
        """A page of a field's history, newest first, and the total count."""
        ...

    async def add_file(self, file: StoredFile) -> None: ...

    async def get_file(self, file_id: str) -> StoredFile | None: ...

    async def close(self) -> None:
        """Commit and answer everything queued, then release the database."""
        ...


class Bus(Protocol):
    """Fan-out of events to every subscriber (in this process, or across processes)."""

    def publish(self, event: Event) -> None: ...

    def subscribe(self, handler: Callable[[Event], None]) -> Callable[[], None]:
        """Call `handler` for every event from now on; returns a function that unsubscribes."""
        ...


class Blobs(Protocol):
    """File contents, addressed by file id."""

    async def put(self, file_id: str, data: bytes) -> None:
        """Store durably; returns only once the data would survive a crash."""
        ...

    def local_path(self, file_id: str) -> str | None:
        """A path the web server can stream from, if the blobs live on this machine's disk."""
        ...

    async def get(self, file_id: str) -> bytes | None: ...
