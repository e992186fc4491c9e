"""ESP-AI device records: the third-party API's view of an account's devices, what a console may
send them, and the firmware's side (binding itself, its socket, what it reports)."""

from __future__ import annotations

from typing import Any

from devicecloud.core.errors import (
    Conflict,
    DeviceCloudError,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from devicecloud.core.espai import values as v
from devicecloud.core.espai.models import REPORTED, UPDATABLE, DeviceQuery, EspAiDevice
from devicecloud.core.events import DeviceBound, DeviceReleased, EspAiMessage
from devicecloud.core.ids import new_token, normalise_mac, now_ms
from devicecloud.core.models import Account
from devicecloud.core.ports import Bus, Presence, Store


class Unbound(DeviceCloudError):
    """The device is not (or no longer) bound to the agent it names."""


class EspAiDevices:
    """An account's ESP-AI device records, kept by third parties and by the devices themselves."""

    def __init__(self, store: Store, bus: Bus, presence: Presence) -> None:
        self.store = store
        self.bus = bus
        self.presence = presence

    async def record(self, device: EspAiDevice) -> dict[str, Any]:
        """The device as `/devices/list` shows it."""
        return v.record(device, (await self.presence.status(device.token)).online)

    # The third-party API ---------------------------------------------------------------------

    async def query(self, account: Account,
                    doc: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """A page of the account's devices filtered as `/devices/list` says, and the count of all
        that match. `name` matches a substring; every other filter matches exactly."""
        exact = {key: text for key in ("bin_id", "version", "enable", "type")
                 if (text := v.optional_text(doc, key)) is not None}
        online = v.zero_or_one(v.optional_text(doc, "is_online"), "is_online")
        device_id = v.optional_text(doc, "device_id")
        mac: str | None = None
        if device_id is not None:
            try:
                mac = normalise_mac(device_id)
            except InvalidRequest:
                return [], 0  # no device has such an id
        page = v.positive_int(doc, "page", 1, v.MAX_PAGE)
        limit = v.positive_int(doc, "limit", v.MAX_LIMIT, v.MAX_LIMIT)
        query = DeviceQuery(
            account.id, exact, name=v.optional_text(doc, "name"),
            api_key=v.optional_text(doc, "api_key"), mac=mac,
            online=None if online is None else online == "1",
            online_tokens=await self._online_of(account) if online is not None else (),
            limit=limit, offset=(page - 1) * limit)
        devices, total = await self.store.espai_devices(query)
        online_now = await self.presence.online([device.token for device in devices])
        return [v.record(device, device.token in online_now) for device in devices], total

    async def _online_of(self, account: Account) -> tuple[str, ...]:
        """The tokens of the account's devices that are online now."""
        owned = [device.token for device in await self.store.devices_of(account.id)]
        return tuple(await self.presence.online(owned))

    async def get(self, account: Account, public_id: object) -> EspAiDevice:
        """The account's device with this id; another account's device is NotFound too."""
        if public_id is None or public_id == "":
            raise v.MissingParameter("id")
        if not isinstance(public_id, str):
            raise InvalidRequest("参数类型错误:id 应为字符串")
        device = await self.store.espai_device(account.id, public_id)
        if device is None:
            raise NotFound(v.DEVICE_NOT_FOUND)
        return device

    async def update(self, account: Account, doc: dict[str, Any]) -> dict[str, Any]:
        """Change some fields of the device `doc["id"]`; the fields that changed, and the update
        time. `localData` is stored and sent to the device if it is connected."""
        device = await self.get(account, doc.get("id"))
        changes: dict[str, Any] = {}
        for key, limit in UPDATABLE.items():
            if doc.get(key) is None:
                continue
            text = v.text_of(doc[key], key, limit)
            if key == "enable":
                v.zero_or_one(text, key)
            if text != device.text[key]:
                changes[key] = text
        local_data = None
        if doc.get("localData") is not None:
            local_data = v.local_data_of(doc["localData"])
        stored = dict(changes)
        if local_data is not None and local_data != device.local_data:
            stored["local_data"] = local_data
        update_time = device.updated_at
        if stored:
            update_time = now_ms()
            await self.store.espai_update(device.row_id, stored, update_time)
        if local_data:
            self.bus.publish(EspAiMessage(device.token, {
                "type": "set_local_data", "data": v.as_device_strings(local_data)}))
        if "wifi_pwd" in changes and changes["wifi_pwd"] and device.mask_wifi_pwd:
            changes["wifi_pwd"] = v.MASK
        return {**changes, "update_time": update_time}

    async def delete(self, account: Account, ids: list[str]) -> None:
        """Unbind those devices of the account, all or none (NotFound if any id is not one)."""
        if not ids:
            raise InvalidRequest(v.NOTHING_TO_UNBIND)
        tokens = await self.store.espai_release(account.id, ids, now_ms())
        if tokens is None:
            raise NotFound(v.DEVICE_NOT_FOUND)
        released(self.bus, tokens)

    async def unbind(self, account: Account, doc: dict[str, Any]) -> None:
        """Unbind the device with MAC `doc["device_id"]` from the agent `doc["api_key"]`."""
        api_key = v.required_text(doc, "api_key", 64)
        mac = _mac(v.required_text(doc, "device_id", 64))
        agent = await self.store.agent_by_api_key(api_key)
        if agent is None or agent.account_id != account.id:
            raise NotFound(v.AGENT_NOT_FOUND)
        device = await self.store.espai_device_by_mac(mac)
        if device is None or device.owner_id != account.id or device.agent_id != agent.id:
            raise NotFound(v.DEVICE_NOT_FOUND)
        await self.delete(account, [device.public_id])

    async def set_mask_wifi_pwd(self, account: Account, on: bool) -> None:
        """Whether the account's API results show `wifi_pwd` as `******`."""
        await self.store.set_mask_wifi_pwd(account.id, on)

    async def mask_wifi_pwd(self, account: Account) -> bool:
        return await self.store.mask_wifi_pwd(account.id)

    # What a console may send -------------------------------------------------------------------

    async def send_message(self, account: Account, public_id: object, text: str) -> None:
        """Show or log `text` on the device if it is connected."""
        device = await self.get(account, public_id)
        self.bus.publish(EspAiMessage(device.token, {"type": "message", "message": text}))

    async def ask_local_data(self, account: Account, public_id: object) -> None:
        """Ask the connected device to report its local data (kept when it answers)."""
        device = await self.get(account, public_id)
        self.bus.publish(EspAiMessage(device.token, {"type": "get_local_data"}))

    # The firmware's side -------------------------------------------------------------------------

    async def add(self, doc: dict[str, Any]) -> EspAiDevice:
        """`/devices/add`: bind the MAC to the agent owning `api_key`. Again for the same account
        is fine (it may move to another of its agents); a device of another account is Conflict."""
        mac = _mac(v.required_text(doc, "device_id", 64))
        api_key = v.required_text(doc, "api_key", 64)
        reported = {key: text for key, limit in REPORTED.items()
                    if (text := v.optional_text(doc, key, limit)) is not None}
        agent = await self.store.agent_by_api_key(api_key)
        if agent is None:
            raise Unauthorized(v.AGENT_NOT_FOUND)
        device = await self.store.espai_bind(mac, new_token(), agent, reported, now_ms())
        if device is None:
            raise Conflict(v.BOUND_ELSEWHERE)
        account = await self.store.account_by_id(agent.account_id)
        if account is not None:
            self.bus.publish(DeviceBound(device.token, account.id,
                                         account.display_name or account.email))
        return device

    async def connect(self, device_id: object, api_key: object) -> EspAiDevice:
        """The device opening its WebSocket; Unbound unless its MAC is bound to the account of
        the agent owning `api_key`."""
        if not isinstance(device_id, str) or not device_id:
            raise v.MissingParameter("device_id")
        if not isinstance(api_key, str) or not api_key:
            raise v.MissingParameter("api_key")
        mac = _mac(device_id)
        agent = await self.store.agent_by_api_key(api_key)
        device = await self.store.espai_device_by_mac(mac)
        if agent is None or device is None or device.owner_id != agent.account_id:
            raise Unbound(v.UNBOUND_NOTICE)
        return device

    async def seen(self, device: EspAiDevice) -> None:
        """Record that the device was seen now."""
        await self.store.touch(device.row_id, now_ms())

    async def report_info(self, device: EspAiDevice, data: object) -> None:
        """`upload_device_info`: what the firmware knows of itself fills the record."""
        if not isinstance(data, dict):
            return
        changes: dict[str, Any] = {}
        for key, limit in REPORTED.items():
            value = data.get(key)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                text = v.text_of(value, key, 1 << 20)[:limit]
                if text != device.text.get(key):
                    changes[key] = device.text[key] = text
        if changes:
            device.updated_at = now_ms()
            await self.store.espai_update(device.row_id, changes, device.updated_at)

    async def report_battery(self, device: EspAiDevice, percent: object) -> None:
        """`battery`: the charge in percent, kept as a whole number from 0 to 100."""
        try:
            value = round(float(percent))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return
        value = max(0, min(100, value))
        if value != device.battery:
            device.battery = value
            await self.store.espai_update(device.row_id, {"battery": value}, None)

    async def report_local_data(self, device: EspAiDevice, data: object) -> None:
        """`get_local_data_res`: the device's local data as it reports it."""
        try:
            local = v.local_data_of(data)
        except InvalidRequest:
            return
        device.local_data = local
        await self.store.espai_update(device.row_id, {"local_data": local}, None)


def released(bus: Bus, tokens: list[str]) -> None:
    """Announce that the devices of these tokens were unbound."""
    for token in tokens:
        bus.publish(DeviceReleased(token))


def _mac(device_id: str) -> str:
    try:
        return normalise_mac(device_id)
    except InvalidRequest:
        raise InvalidRequest("参数错误:device_id 不是有效的 MAC 地址") from None
