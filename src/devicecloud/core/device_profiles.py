"""What an owner says about a device: its name, description and tags, and the owner's listing of
their devices by those (pages in a stable order, filtered by text or tag)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devicecloud.core.errors import InvalidRequest, NotFound
from devicecloud.core.ids import now_ms
from devicecloud.core.models import Account, Device

if TYPE_CHECKING:
    from devicecloud.core.ports import DeviceProfileStore

MAX_DEVICE_NAME = 128
MAX_DESCRIPTION = 2000
MAX_TAG = 64
MAX_TAGS = 50
MAX_PAGE = 1000


@dataclass(slots=True)
class DeviceProfile:
    """A device as its owner sees it: the record, its public id, and what the owner said of it."""

    device: Device
    public_id: str
    name: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    """Sorted, without repeats."""


@dataclass(slots=True, frozen=True)
class ProfileQuery:
    """A page of one owner's devices in id order: those after the device of row id `after`,
    whose name or MAC contains `text` (any case), that carry `tag`."""

    owner_id: int
    limit: int
    after: int = 0
    text: str | None = None
    tag: str | None = None


@dataclass(slots=True, frozen=True)
class ProfileChanges:
    """What to change (None: leave it): a whole new set of tags replaces the old."""

    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None

    @property
    def columns(self) -> dict[str, str]:
        found = {"name": self.name, "description": self.description}
        return {column: value for column, value in found.items() if value is not None}


def check_device_name(raw: object) -> str:
    """A device's name: text of at most 128 characters (trimmed; empty clears it)."""
    if not isinstance(raw, str):
        raise InvalidRequest("name must be a string")
    name = raw.strip()
    if len(name) > MAX_DEVICE_NAME:
        raise InvalidRequest(f"name longer than {MAX_DEVICE_NAME} characters")
    return name


def check_description(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidRequest("description must be a string")
    if len(raw) > MAX_DESCRIPTION:
        raise InvalidRequest(f"description longer than {MAX_DESCRIPTION} characters")
    return raw


def check_tags(raw: object) -> list[str]:
    """Tags: a list of at most 50 strings of 1 to 64 characters (trimmed), sorted, repeats
    dropped."""
    if not isinstance(raw, list):
        raise InvalidRequest("tags must be a list of strings")
    if len(raw) > MAX_TAGS:
        raise InvalidRequest(f"tags: at most {MAX_TAGS}")
    tags = set()
    for position, tag in enumerate(raw):
        text = tag.strip() if isinstance(tag, str) else ""
        if not 1 <= len(text) <= MAX_TAG:
            raise InvalidRequest(f"tags[{position}] must be a string of 1 to {MAX_TAG} "
                                 "characters")
        tags.add(text)
    return sorted(tags)


class DeviceProfiles:
    """Naming, describing and tagging one's devices, and finding them by those."""

    def __init__(self, store: DeviceProfileStore) -> None:
        self.store = store

    async def page(self, query: ProfileQuery) -> list[DeviceProfile]:
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be from 1 to {MAX_PAGE}")
        return await self.store.device_profiles(query)

    async def owned(self, account: Account, public_id: object) -> DeviceProfile:
        """The account's device with this public id; NotFound if it is not the account's (or
        does not exist: the same answer)."""
        found = None
        if isinstance(public_id, str):
            found = await self.store.device_profile(account.id, public_id.lower())
        if found is None:
            raise NotFound(f"no device of this account has the id {str(public_id)[:40]!r}")
        return found

    async def owned_by_device(self, account: Account, device: Device) -> DeviceProfile:
        """The profile of the account's `device`; NotFound if it is no longer the account's."""
        found = await self.store.device_profile_of(account.id, device.id)
        if found is None:
            raise NotFound("this device is no longer this account's")
        return found

    async def change(self, account: Account, profile: DeviceProfile,
                     changes: ProfileChanges) -> DeviceProfile:
        """Apply checked `changes` (see `check_*`); NotFound if the account no longer owns the
        device. Answers the profile as stored now."""
        checked = ProfileChanges(
            None if changes.name is None else check_device_name(changes.name),
            None if changes.description is None else check_description(changes.description),
            None if changes.tags is None else check_tags(changes.tags))
        if not await self.store.change_device_profile(profile.device.id, account.id, checked,
                                                      now_ms()):
            raise NotFound("this device is no longer this account's")
        return await self.owned(account, profile.public_id)
