"""Events: every change the core commits is announced on the bus as one of these; those an
account is told of are also rows of the event log (`LoggedEvent`, one of `EVENT_TYPES`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from devicecloud.core.models import Field


class Change(Enum):
    """What happened to a field; the value is the EzData push command that announces it."""

    ADDED = 109
    MODIFIED = 107
    DELETED = 108
    FILE = 105


@dataclass(slots=True, frozen=True)
class FieldChanged:
    """A field of a device was added, modified, deleted or given a file.

    `source` says who: "device", "user" or "api". `origin` identifies the live connection that made
    the change (it receives a reply rather than a push), or is None.
    """

    device_token: str
    change: Change
    field: Field
    source: str
    origin: object = None


@dataclass(slots=True, frozen=True)
class DeviceBound:
    """A device was bound to an account (the device is told with push 106)."""

    device_token: str
    account_id: int
    display_name: str


@dataclass(slots=True, frozen=True)
class DeviceReleased:
    """A device's binding to its owner was removed."""

    device_token: str


@dataclass(slots=True, frozen=True)
class DeviceDeleted:
    """A device was deleted with its data by its owner: its token names nothing now, and its
    live connections are no longer logged in."""

    device_token: str


@dataclass(slots=True, frozen=True)
class ReleaseRequested:
    """The device's token asked to release it from its owner, who confirms or refuses."""

    device_token: str
    owner_id: int


@dataclass(slots=True, frozen=True)
class DeviceUpdated:
    """A device's record changed in a way its live connections must follow: the largest
    message it accepts from us."""

    device_token: str
    downlink_limit: int | None


@dataclass(slots=True, frozen=True)
class ConnectionClaimed:
    """A live connection took `claim` (an MQTT client id, say) for the device; any other
    connection holding the same claim, in any process, must close. `holder` names the new one."""

    device_token: str
    claim: str
    holder: str


@dataclass(slots=True, frozen=True)
class PresenceChanged:
    """A device gained its first live connection to the publishing process, or lost its last one
    there. Across several processes, ask the presence directory for the device's state."""

    device_token: str
    online: bool
    transport: str


@dataclass(slots=True, frozen=True)
class EspAiMessage:
    """A message for the device's ESP-AI connections (`set_local_data`, `ota_update`, ...)."""

    device_token: str
    message: dict[str, Any]


Event = (FieldChanged | DeviceBound | DeviceReleased | DeviceDeleted | ReleaseRequested |
         DeviceUpdated | ConnectionClaimed | PresenceChanged | EspAiMessage)


FIELD_CHANGED = "field.changed"
FIELD_DELETED = "field.deleted"
FILE_UPLOADED = "file.uploaded"
DEVICE_BOUND = "device.bound"
DEVICE_RELEASED = "device.released"
DEVICE_ONLINE = "device.online"
DEVICE_OFFLINE = "device.offline"
EVENT_TYPES = (FIELD_CHANGED, FIELD_DELETED, FILE_UPLOADED, DEVICE_BOUND, DEVICE_RELEASED,
               DEVICE_ONLINE, DEVICE_OFFLINE)
"""The types of the event log's rows (spec/api.md section 5)."""


@dataclass(slots=True, frozen=True)
class LoggedEvent:
    """A row of the event log: committed, with its account's device named by its public id.

    `id` is unique and increases in commit order; `data` is the type's own (a field's `name`,
    `value` and `source`; a presence change's `transport`)."""

    id: int
    type: str
    device: str
    data: dict[str, Any]
    created: int

    def as_json(self) -> dict[str, Any]:
        """The event as the API gives it: `{"id", "type", "created", "data": {"device", ...}}`."""
        return {"id": str(self.id), "type": self.type, "created": self.created,
                "data": {"device": self.device, **self.data}}
