"""DeviceCloud: the operations every transport calls, and the rules they follow."""

from __future__ import annotations

import contextlib
import mimetypes
import posixpath
import re
from collections.abc import Callable
from typing import Any, Literal

from devicecloud.core import pairing
from devicecloud.core.device_profiles import DeviceProfiles
from devicecloud.core.errors import (
    Conflict,
    DeviceCloudError,
    InvalidRequest,
    NotFound,
    TooLarge,
    Unauthorized,
)
from devicecloud.core.event_log import EventLog
from devicecloud.core.events import (
    FIELD_CHANGED,
    FILE_UPLOADED,
    Change,
    DeviceBound,
    DeviceDeleted,
    DeviceReleased,
    DeviceUpdated,
    FieldChanged,
    ReleaseRequested,
)
from devicecloud.core.ids import is_token, new_token, normalise_mac, now_ms
from devicecloud.core.models import (
    Account,
    Device,
    Field,
    HistoryEntry,
    StoredFile,
    data_type_of,
    encode_value,
)
from devicecloud.core.ports import Blobs, Bus, EzDataStore, Spool

Registration = Literal["open", "allow-list"]
"""Who may register: any MAC (EzData's way), or only the MACs allowed beforehand."""

RELEASE_AFTER_MS = 24 * 3600 * 1000
"""A release asked for by a bound device's token takes effect this long after the request unless
the owner confirms it sooner or refuses it."""
REFUSAL_MS = 30 * 24 * 3600 * 1000
"""After the owner refuses a release, further requests by token are refused this long."""
MAX_NAME_LENGTH = 128
MAX_UNIT_LENGTH = 16
MAX_VALUE_BYTES = 60 * 1024
MAX_HISTORY_PAGE = 1_000_000
MAX_HISTORY_SIZE = 1000
PUBLIC = "1"
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._()\- ]+")


def check_name(name: object) -> str:
    """A field name: a non-empty string of at most 128 characters, without NUL."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("name cannot be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"name longer than {MAX_NAME_LENGTH} characters")
    if "\0" in name:
        raise InvalidRequest("name cannot contain NUL characters")
    return name


def check_value(value: Any) -> bytes:
    """The JSON encoding of a field value (the only one made before the commit): a JSON value
    nested at most `MAX_DEPTH` deep, its integers within 64 bits (`encode_value`), whose
    encoding fits in 60 KB."""
    encoded = encode_value(value)
    if len(encoded) > MAX_VALUE_BYTES:
        raise TooLarge(f"value larger than {MAX_VALUE_BYTES} bytes")
    return encoded


def check_page(page: int, size: int) -> tuple[int, int]:
    """A history page: 1-based (0 or less is the first) up to `MAX_HISTORY_PAGE`, else
    InvalidRequest; rows per page from 1 to `MAX_HISTORY_SIZE` (more is capped)."""
    if page > MAX_HISTORY_PAGE:
        raise InvalidRequest(f"pageNum must be from 1 to {MAX_HISTORY_PAGE}")
    return max(page, 1), max(1, min(size, MAX_HISTORY_SIZE))


def safe_file_name(raw: str) -> str:
    """The base name of a client-supplied path, reduced to harmless characters."""
    base = posixpath.basename(raw.replace("\\", "/")).strip()
    base = _UNSAFE_FILE_CHARS.sub("_", base).lstrip(".")
    return base[:100] or "file"


DownlinkSize = Callable[[str, str, bytes], int]
"""The size in bytes of the largest message a device (by token) is sent when its field `name`
takes a value (given JSON-encoded); the transports' rule, given by the composition root."""


class DeviceCloud:
    """Devices, their data fields and files. Each write is committed before it returns, then
    announced on the bus.

    Nothing about a device is remembered between calls: another process may bind, release or
    change it at any moment, so every authorisation reads the database. A live connection keeps
    its `Device` and follows it through the bus (`DeviceUpdated`).
    """

    def __init__(self, store: EzDataStore, bus: Bus, blobs: Blobs, *,
                 downlink_size: DownlinkSize, fields_per_device: int | None = 1000,
                 registration: Registration = "open") -> None:
        self.store = store
        self.profiles = DeviceProfiles(store)  # names, descriptions, tags
        self.registration = registration
        self.fields_per_device = fields_per_device  # `--limit device.fields`; None: no cap
        self.on_full: Callable[[Device, str], None] | None = None  # told of each refused add
        self.bus = bus
        self.events = EventLog(store, bus)  # presence and retention of the event log
        self.blobs = blobs
        self.downlink_size = downlink_size

    # devices -------------------------------------------------------------------------------

    async def register_mac(self, mac: object, device_type: object) -> Device:
        """The device with this MAC, created on first sight (with `allow-list` registration,
        only if the MAC was allowed); its token never changes."""
        normal = normalise_mac(mac)
        kind = device_type if isinstance(device_type, str) else ""
        if self.registration == "allow-list" and await self.store.device_by_mac(normal) is None:
            raise Unauthorized(f"the MAC {normal} may not register here: this server registers "
                               "only the MACs on its allow-list (its owner adds it in the "
                               "console, or an admin with `devicecloud devices allow`)")
        return await self.store.register_mac(normal, kind[:64], new_token(), now_ms())

    async def allow_mac(self, mac: object, account: Account | None = None) -> Device:
        """Put a MAC on the allow-list by making its device record now, and bind it to
        `account` if given. A MAC already known is Conflict for an account: claiming a device
        that registered already takes its token or pairing code, not its MAC."""
        normal = normalise_mac(mac)
        if account is not None and await self.store.device_by_mac(normal) is not None:
            raise Conflict(f"the MAC {normal} is known already: bind that device with its token "
                           "or the pairing code it shows")
        device = await self.store.register_mac(normal, "", new_token(), now_ms())
        if account is not None:
            await self.bind(device, account)
        return device

    async def authenticate(self, token: object) -> Device:
        """The device owning `token`, or Unauthorized."""
        device = await self.store.device_by_token(token) if is_token(token) else None
        if device is None:
            raise Unauthorized("unknown deviceToken")
        return device

    async def touch(self, device: Device) -> None:
        """Record that the device was seen now."""
        device.last_seen_at = now_ms()
        await self.store.touch(device.id, device.last_seen_at)

    async def bind(self, device: Device, account: Account) -> None:
        """Bind the device to `account` (again is fine); a device bound elsewhere is Conflict.
        The device is told with push 106. Releases due are carried out first, so a device whose
        owner left its release request unanswered can be bound at once."""
        if device.owner_id not in (None, account.id) and device.release_requested_at:
            await self.release_due()
        if not await self.store.bind_device(device.id, account.id, now_ms()):
            raise Conflict("this device is bound to another account; release it there first")
        device.owner_id = account.id
        self.bus.publish(DeviceBound(device.token, account.id,
                                     account.display_name or account.email))

    async def devices_of(self, account: Account) -> list[Device]:
        return await self.store.devices_of(account.id)

    async def limit_downlinks(self, device: Device, limit: int) -> None:
        """From now on refuse changes whose push would exceed `limit` bytes for this device
        (MQTT firmwares have fixed receive buffers: StamPLC's is 4096 bytes, topic included)."""
        if device.downlink_limit != limit:
            await self.store.set_downlink_limit(device.id, limit)
            device.downlink_limit = limit
            self.bus.publish(DeviceUpdated(device.token, limit))

    async def issue_pair_code(self, device: Device) -> str:
        """A fresh pairing code for the device (EzData 112), like `K7QM-4XPA`, valid once for 10
        minutes; it replaces the device's earlier code."""
        return await pairing.issue(self.store, device, now_ms())

    async def bind_by_pair_code(self, code: object, account: Account) -> Device:
        """Bind the device that was given `code` to `account` (pushes 106); the code is used up."""
        device = await self.authenticate(await pairing.redeem(self.store, code, now_ms()))
        await self.bind(device, account)
        return device

    async def request_release(self, device: Device) -> str:
        """A release asked for by the device's token (`releaseUser`). Knowing a token is not owning
        the device, so a bound device is released only when its owner confirms in the console, or
        `RELEASE_AFTER_MS` after the request if the owner neither confirms nor refuses. Returns
        "released" (it was not bound), "requested", or "refused" (the owner refused such
        requests; they are not renewed before `REFUSAL_MS` has passed)."""
        owner = device.owner_id
        if owner is None:
            return "released"
        if not await self.store.request_release(device.id, owner, now_ms()):
            fresh = await self.store.device_by_token(device.token)
            return "released" if fresh is None or fresh.owner_id is None else "refused"
        self.bus.publish(ReleaseRequested(device.token, owner))
        return "requested"

    async def refuse_release(self, device: Device, owner_id: int) -> bool:
        """The owner keeps the device; further requests are refused for `REFUSAL_MS`."""
        return await self.store.refuse_release(device.id, owner_id, now_ms() + REFUSAL_MS)

    async def release_due(self) -> list[str]:
        """Carry out the releases their owners left unanswered for `RELEASE_AFTER_MS`."""
        now = now_ms()
        tokens = await self.store.release_due(now - RELEASE_AFTER_MS, now)
        for token in tokens:
            self.bus.publish(DeviceReleased(token))
        return tokens

    async def release_owner(self, device: Device, owner_id: int | None = None) -> bool:
        """Remove the device's binding to `owner_id` (by default the owner it has now); its data
        stays. False if that account no longer owns it (another process released or rebound it
        meanwhile): nothing changes then."""
        owner = device.owner_id if owner_id is None else owner_id
        if owner is None or not await self.store.release_device(device.id, owner, now_ms()):
            return False
        device.owner_id = None
        self.bus.publish(DeviceReleased(device.token))
        return True

    async def set_unit(self, device: Device, name: object, unit: object) -> str:
        """Give a field the unit its values are in (at most 16 characters; "" removes it);
        NotFound if the device has no such field. Answers the unit as stored."""
        if not isinstance(unit, str) or len(unit.strip()) > MAX_UNIT_LENGTH:
            raise InvalidRequest(f"a unit is at most {MAX_UNIT_LENGTH} characters")
        checked = check_name(name)
        if not await self.store.set_unit(device.id, checked, unit.strip()):
            raise NotFound(f"no field named {checked!r}")
        return unit.strip()

    async def units(self, device: Device) -> dict[str, str]:
        return await self.store.units_of(device.id)

    async def delete_device(self, device: Device, account: Account) -> None:
        """Delete the account's device with its fields, history and files; NotFound if it is
        not the account's. A device that registers again afterwards is a new one, with a new
        token; its live connections are logged out at once."""
        files = await self.store.delete_device(device.id, account.id, now_ms())
        if files is None:
            raise NotFound("this device is not this account's")
        await self.blobs.delete(files)
        self.bus.publish(DeviceDeleted(device.token))

    # fields --------------------------------------------------------------------------------

    async def add_field(self, device: Device, name: object, value: Any, *, data_type: object = None,
                        permissions: str = "0", source: str = "device",
                        origin: object = None) -> Field:
        """Add a field; a name already taken is stored as `name(1)`, `name(2)`, ..."""
        checked, encoded = check_name(name), check_value(value)
        self._check_downlink(device, checked, encoded)
        try:
            field = await self.store.add_field(
                device.id, checked, value, encoded, data_type_of(value, data_type),
                permissions, (new_token(), new_token()), now_ms(), self.fields_per_device, source)
        except Conflict as full:  # the device holds `fields_per_device` fields
            self._full(device, full)
            raise
        self._announce(device, Change.ADDED, field, source, origin)
        return field

    async def modify_field(self, device: Device, name: object, value: Any, *,
                           data_type: object = None, source: str = "device",
                           origin: object = None) -> Field:
        """Change an existing field's value; an unknown name is NotFound."""
        checked, encoded = check_name(name), check_value(value)
        self._check_downlink(device, checked, encoded)
        field = await self.store.modify_field(
            device.id, checked, value, encoded, data_type_of(value, data_type), now_ms(), source)
        if field is None:
            raise NotFound(f"no data named {checked!r}")
        self._announce(device, Change.MODIFIED, field, source, origin)
        return field

    async def upsert_field(self, device: Device, name: object, value: Any, *,
                           data_type: object = None, permissions: object = None,
                           source: str = "api", origin: object = None,
                           change: Change | None = None) -> Field:
        """Set the field of that name, creating it if needed (the REST API's `add`)."""
        perms = permissions if isinstance(permissions, str) and permissions else "0"
        checked, encoded = check_name(name), check_value(value)
        self._check_downlink(device, checked, encoded)
        try:
            field, added = await self.store.upsert_field(
                device.id, checked, value, encoded, data_type_of(value, data_type),
                perms[:8], (new_token(), new_token()), now_ms(), self.fields_per_device, source,
                FILE_UPLOADED if change is Change.FILE else FIELD_CHANGED)
        except Conflict as full:  # new, and the device holds `fields_per_device` fields
            self._full(device, full)
            raise
        kind = change or (Change.ADDED if added else Change.MODIFIED)
        self._announce(device, kind, field, source, origin)
        return field

    async def delete_field(self, device: Device, name: object, *, source: str = "device",
                           origin: object = None) -> Field:
        """Delete a field and its history; an unknown name is NotFound."""
        checked = check_name(name)
        field = await self.store.delete_field(device.id, checked, source, now_ms())
        if field is None:
            raise NotFound(f"no data named {checked!r}")
        await self.free_files(device, checked)
        self._announce(device, Change.DELETED, field, source, origin)
        return field

    async def get_field(self, device: Device, name: object) -> Field:
        checked = check_name(name)
        field = await self.store.get_field(device.id, checked)
        if field is None:
            raise NotFound(f"no data named {checked!r}")
        return field

    async def list_fields(self, device: Device) -> list[Field]:
        return await self.store.list_fields(device.id)

    async def history(self, field: Field, page: int = 1,
                      size: int = 100) -> tuple[list[HistoryEntry], int]:
        """A page of the field's values, newest first (see `check_page`)."""
        page, size = check_page(page, size)
        return await self.store.history(field.id, size, (page - 1) * size)

    async def public_field(self, data_token: object) -> Field:
        """A field read through its `dataToken`: only if its permissions make it public."""
        field = None
        if is_token(data_token):
            field = await self.store.field_by_data_token(data_token)
        if field is None or field.permissions != PUBLIC:
            raise NotFound("no public data with this dataToken")
        return field

    # files ---------------------------------------------------------------------------------

    async def store_file(self, device: Device, name: object, file_name: str,
                         data: bytes | Spool, base_url: str, *, source: str = "device",
                         origin: object = None) -> Field:
        """Keep an uploaded file (bytes, or a spool of the blob store) and point the field `name`
        at its URL (announced as 105); the field's earlier files are deleted. A refused change
        keeps nothing."""
        checked = check_name(name)
        base = safe_file_name(file_name)
        content_type = mimetypes.guess_type(base)[0] or "application/octet-stream"
        if "." not in base:
            base += mimetypes.guess_extension(content_type) or ".bin"
        size = len(data) if isinstance(data, bytes) else data.size
        stored = StoredFile(new_token(), device.id, checked, base, content_type, size, now_ms())
        url = f"{base_url}/files/{stored.id}/{base}"
        self._check_downlink(device, checked, encode_value(url))
        if isinstance(data, bytes):
            await self.blobs.put(stored.id, data)
        else:
            await data.keep(stored.id)
        try:
            await self.store.add_file(stored)
            field = await self.upsert_field(device, checked, url, data_type="file",
                                            source=source, origin=origin, change=Change.FILE)
        except BaseException:
            await self.blobs.delete([stored.id])
            with contextlib.suppress(DeviceCloudError):  # the first failure is the one to tell
                await self.store.delete_file(stored.id)
            raise
        await self.free_files(device, checked, keep=stored.id)
        return field

    async def free_files(self, device: Device, name: str, keep: str | None = None) -> None:
        """Delete the files (records and blobs) of the device's field `name`, except `keep`."""
        await self.blobs.delete(await self.store.delete_files(device.id, name, keep))

    async def get_file(self, file_id: str) -> StoredFile:
        stored = await self.store.get_file(file_id) if is_token(file_id) else None
        if stored is None:
            raise NotFound("no such file")
        return stored

    def _full(self, device: Device, refusal: Conflict) -> None:
        if self.on_full is not None:
            self.on_full(device, str(refusal))

    def _check_downlink(self, device: Device, name: str, encoded: bytes) -> None:
        """TooLarge if the change would cause a message larger than the device accepts."""
        limit = device.downlink_limit
        if limit and self.downlink_size(device.token, name, encoded) > limit:
            raise TooLarge(f"the push for this change would exceed the device's {limit}-byte "
                           "message limit")

    def _announce(self, device: Device, change: Change, field: Field, source: str,
                  origin: object) -> None:
        self.bus.publish(FieldChanged(device.token, change, field, source, origin))
