"""The small interfaces the core needs from the outside: a store, a bus, a blob store and
presence (which devices hold a live connection, in any process)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from devicecloud.core.device_profiles import DeviceProfile, ProfileChanges, ProfileQuery
from devicecloud.core.espai.models import Agent, DeviceQuery, EspAiDevice, Firmware
from devicecloud.core.events import Event, LoggedEvent
from devicecloud.core.models import Account, Device, Field, HistoryEntry, StoredFile


# The store, by aggregate: each core service asks for the parts it uses. Every write returns only
# after it is committed; a read sees every write committed before it started (never waiting for
# writes queued after).
class DeviceStore(Protocol):
    """Devices: registration, ownership (bind, release and release requests), pairing codes,
    when each was last seen."""

    async def register_mac(self, mac: str, device_type: str, token: str, now: int) -> Device:
        """The device with this MAC (created with `token` if new)."""
        ...

    async def device_by_token(self, token: str) -> Device | None: ...

    async def device_by_mac(self, mac: str) -> Device | None: ...

    async def delete_device(self, device_id: int, owner_id: int, now: int) -> list[str] | None:
        """Delete the device and all its data if `owner_id` owns it (None otherwise: nothing
        changed); the ids of the files whose blobs are to be removed."""

    async def release_device(self, device_id: int, owner_id: int, now: int) -> bool:
        """Unbind the device (and end its ESP-AI agent binding) if `owner_id` owns it; False
        (nothing changed) if another account or none does."""
        ...

    async def request_release(self, device_id: int, owner_id: int, now: int) -> bool:
        """Note that the device asked to leave `owner_id` at `now` (an earlier request keeps its
        time); False if that account does not own it or refused such requests until later."""
        ...

    async def refuse_release(self, device_id: int, owner_id: int, until: int) -> bool:
        """The owner keeps the device: forget its request, and refuse new ones until `until`."""
        ...

    async def release_due(self, asked_before: int, now: int) -> list[str]:
        """Release every device whose request is older than `asked_before`; their tokens."""
        ...

    async def bind_device(self, device_id: int, owner_id: int, now: int) -> bool:
        """Make `owner_id` the device's owner unless another account owns it; True if it does."""
        ...

    async def devices_of(self, owner_id: int) -> list[Device]: ...

    async def set_downlink_limit(self, device_id: int, limit: int | None) -> None:
        """The largest message the device accepts from us (None: no limit)."""
        ...

    async def touch(self, device_id: int, now: int) -> None:
        """Record that the device was seen at `now`."""
        ...

    async def put_pair_code(self, code: str, device_id: int, expires_at: int, now: int) -> bool:
        """Give the device this pairing code in place of any earlier one (and forget codes
        expired at `now`); False if the code is already another device's live code."""
        ...

    async def take_pair_code(self, code: str, now: int) -> str | None:
        """Remove the code; the token of its device if it was still live at `now`."""
        ...


class FieldStore(Protocol):
    """The data fields of devices and their history."""

    async def set_unit(self, device_id: int, name: str, unit: str) -> bool:
        """Give the device's field `name` its unit ("" removes it); False if there is none."""
        ...

    async def units_of(self, device_id: int) -> dict[str, str]:
        """The units of the device's fields that have one, by field name."""
        ...

    async def add_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                        data_type: str, permissions: str, ids: tuple[str, str],
                        now: int, most: int | None = 1000, source: str = "device") -> Field:
        """Insert a field (`encoded` is the value's JSON); a taken name becomes `name(1)`,
        `name(2)`, ... Conflict ("limit reached: device.fields N") if the device already holds
        `most` fields (None: no cap), checked in the transaction that inserts. Every write of a
        field also writes its event (`source` says who made it) if the device has an owner."""
        ...

    async def modify_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                           data_type: str | None, now: int,
                           source: str = "device") -> Field | None:
        """Set an existing field's value (and type if given); None if no such name."""
        ...

    async def upsert_field(self, device_id: int, name: str, value: Any, encoded: bytes,
                           data_type: str, permissions: str, ids: tuple[str, str],
                           now: int, most: int | None = 1000, source: str = "api",
                           kind: str = "field.changed") -> tuple[Field, bool]:
        """Modify the field of that name, or add it (Conflict if the device is full, as for
        `add_field`); True when it was added. `kind` is its event's type."""
        ...

    async def delete_field(self, device_id: int, name: str, source: str = "device",
                           now: int = 0) -> Field | None: ...

    async def get_field(self, device_id: int, name: str) -> Field | None: ...

    async def list_fields(self, device_id: int) -> list[Field]: ...

    async def field_by_data_token(self, data_token: str) -> Field | None: ...

    async def history(self, field_id: str, limit: int,
                      offset: int) -> tuple[list[HistoryEntry], int]:
        """A page of a field's history, newest first, and the total count."""
        ...


class HistoryStore(Protocol):
    """Range reads of fields' history and backfills into it (core/history.py)."""

    async def history_rows(self, field_id: str, start: int, end: int, after: tuple[int, int],
                           limit: int) -> list[tuple[int, int, str]]:
        """Up to `limit` rows `(created_at, id, value JSON)` of the field with `start <=
        created_at < end`, after the key `after` in `(created_at, id)` order."""
        ...

    async def history_buckets(self, field_id: str, start: int, end: int, size: int,
                              limit: int) -> list[tuple[int, float, float, float, int, float]]:
        """Up to `limit` buckets `(start, min, max, mean, count, last)` of `size` ms over the
        numeric rows in `[start, end)`, oldest first."""
        ...

    async def backfill(self, device_id: int, name: str, points: list[tuple[int, str, str]],
                       ids: tuple[str, str], most: int | None) -> tuple[Field | None, bool]:
        """Write every point `(t, value JSON, data type)` into the field's history in one
        transaction (adding the field with the newest if new; None if the device holds `most`
        fields already), making the newest its value if newer; whether the value changed. No
        event is written."""
        ...


class EventStore(Protocol):
    """The event log: each account's events, written by the jobs that commit their changes."""

    async def record_event(self, token: str, kind: str, data: dict[str, Any], now: int) -> None:
        """Log an event of the device (by token) for its owner; nothing if it has none."""
        ...

    async def events_after(self, account_id: int, after: int, types: tuple[str, ...] = (),
                           device: str | None = None, limit: int = 500) -> list[LoggedEvent]:
        """The account's events with ids above `after`, in id (commit) order; only of `types`
        and the device of public id `device` if given."""
        ...

    async def last_event_id(self) -> int:
        """The highest event id committed so far (0 for none)."""
        ...

    async def forget_events(self, before: int, most: int) -> int:
        """Delete up to `most` of the oldest events, those created before `before`; how many."""
        ...


class FileStore(Protocol):
    """The records of stored files (their contents are in `Blobs`)."""

    async def add_file(self, file: StoredFile) -> None: ...

    async def get_file(self, file_id: str) -> StoredFile | None: ...

    async def delete_files(self, device_id: int, field_name: str,
                           keep: str | None = None) -> list[str]:
        """Forget the files of the device's field `field_name` except `keep`; their ids."""
        ...

    async def delete_file(self, file_id: str) -> None: ...


class AccountStore(Protocol):
    """Accounts: who signs in to the console, with the Open API key each holds."""

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
        """Set some of `display_name`, `phone`, `open_api_key`, `password_hash`,
        `session_epoch`."""
        ...


class EspAiStore(Protocol):
    """The ESP-AI API's records: agents, device records, firmware images (see core/espai.py)."""

    async def create_agent(self, agent: Agent) -> None: ...

    async def agent_by_id(self, agent_id: str) -> Agent | None: ...

    async def agent_by_api_key(self, api_key: str) -> Agent | None: ...

    async def agents_of(self, account_id: int) -> list[Agent]: ...

    async def update_agent(self, agent_id: str, changes: dict[str, str], now: int) -> None:
        """Set some of `name`, `api_key`, `server_url`."""
        ...

    async def delete_agent(self, agent_id: str, now: int) -> list[str]:
        """Delete the agent and unbind its devices; the tokens of those devices."""
        ...

    async def espai_bind(self, mac: str, token: str, agent: Agent, reported: dict[str, str],
                         now: int) -> EspAiDevice | None:
        """Bind the MAC (a device created with `token` if new) to the agent and its account, and
        record what the device reported; None if another account owns the device."""
        ...

    async def espai_devices(self, query: DeviceQuery) -> tuple[list[EspAiDevice], int]:
        """A page of the account's device records in a stable order, and the count of all
        that match."""
        ...

    async def espai_device(self, owner_id: int, public_id: str) -> EspAiDevice | None: ...

    async def espai_device_by_mac(self, mac: str) -> EspAiDevice | None: ...

    async def espai_update(self, row_id: int, changes: dict[str, Any], now: int | None) -> None:
        """Set record columns; `now` (unless None) becomes the update time."""
        ...

    async def espai_release(self, owner_id: int, public_ids: list[str],
                            now: int) -> list[str] | None:
        """Unbind all those devices of the account (their tokens), or none (None) if any of the
        ids is not one of its devices."""
        ...

    async def set_mask_wifi_pwd(self, account_id: int, on: bool) -> None: ...

    async def mask_wifi_pwd(self, account_id: int) -> bool: ...

    async def set_firmware_address(self, row_id: int, address: str) -> None:
        """Where the device's firmware socket came from, last."""
        ...

    async def firmware_devices_at(self, address: str) -> list[tuple[str, str, int, int]]:
        """(token, mac, owner id, last seen) of the bound devices whose last firmware socket
        came from `address`."""
        ...

    async def add_firmware(self, image: Firmware) -> str | None:
        """Record an image; "exists" if the account has that version of its bin_id already."""
        ...

    async def firmware_of(self, account_id: int) -> list[Firmware]: ...

    async def latest_firmware(self, account_id: int, bin_id: str) -> Firmware | None:
        """The account's newest image of `bin_id`."""
        ...

    async def get_firmware(self, firmware_id: str) -> Firmware | None: ...

    async def delete_firmware(self, account_id: int, firmware_id: str) -> Firmware | None: ...


class DeviceProfileStore(Protocol):
    """What owners say about their devices: name, description, tags (see device_profiles)."""

    async def device_profiles(self, query: ProfileQuery) -> list[DeviceProfile]:
        """Up to `query.limit` of the owner's devices matching it, in row id order."""
        ...

    async def device_profile(self, owner_id: int, public_id: str) -> DeviceProfile | None: ...

    async def device_profile_of(self, owner_id: int, device_id: int) -> DeviceProfile | None: ...

    async def change_device_profile(self, device_id: int, owner_id: int,
                                    changes: ProfileChanges, now: int) -> bool:
        """Apply `changes` if `owner_id` owns the device; False (nothing changed) otherwise."""
        ...


class EzDataStore(DeviceStore, FieldStore, HistoryStore, FileStore, DeviceProfileStore,
                  EventStore, Protocol):
    """What EzData keeps: devices, their data fields and files, and the event log."""


class Store(EzDataStore, AccountStore, EspAiStore, Protocol):
    """Durable records: every aggregate's, and the store's own end."""

    async def close(self) -> None:
        """Commit and answer everything queued, then release the database."""
        ...


class Bus(Protocol):
    """Fan-out of events to every subscriber (in this process, or across processes).

    Across processes only what is wanted crosses: a process receives another's events about a
    device only while it `want`s that device (it holds a live connection or a page watching it).
    """

    def publish(self, event: Event) -> None: ...

    def subscribe(self, handler: Callable[[Event], None],
                  own_only: bool = False) -> Callable[[], None]:
        """Call `handler` for every event from now on; returns a function that unsubscribes.

        Events published by other processes are delivered only for wanted devices. With
        `own_only`, only events published by this process (for consumers that can reach every
        device from any process, such as a shared MQTT broker, and must act only once).
        """
        ...

    def want(self, token: str) -> None:
        """From now on deliver other processes' events about this device here too."""
        ...

    def unwant(self, token: str) -> None:
        """Stop receiving other processes' events about this device."""
        ...


class Spool(Protocol):
    """An upload being received into a temporary file of the blob store (bounded memory)."""

    size: int

    async def write(self, data: bytes) -> None:
        """Append; `StorageFull` when the disk is full (the spool is then discarded)."""
        ...

    async def keep(self, file_id: str) -> None:
        """Store the contents durably as the blob `file_id`."""
        ...

    def discard(self) -> None:
        """Remove the temporary file unless it was kept; safe to call again."""
        ...


class Blobs(Protocol):
    """File contents, addressed by file id. A full disk is `StorageFull`, and a failed write
    leaves nothing behind."""

    async def put(self, file_id: str, data: bytes) -> None:
        """Store durably; returns only once the data would survive a crash."""
        ...

    def spool(self) -> Spool:
        """A temporary file to receive an upload into, then keep or discard."""
        ...

    async def delete(self, file_ids: Collection[str]) -> None:
        """Remove these blobs; those already gone are fine."""
        ...

    def local_path(self, file_id: str) -> str | None:
        """A path the web server can stream from, if the blobs live on this machine's disk."""
        ...

    async def get(self, file_id: str) -> bytes | None: ...


@dataclass(slots=True, frozen=True)
class DeviceStatus:
    """Whether a device holds a live connection anywhere, and over which transports."""

    online: bool
    transports: tuple[str, ...]


class Presence(Protocol):
    """Which devices are online, across every process serving the fleet."""

    async def status(self, token: str) -> DeviceStatus: ...

    async def online(self, tokens: Collection[str]) -> set[str]:
        """Those of `tokens` whose device holds a live connection somewhere."""
        ...
