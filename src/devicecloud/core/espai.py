"""EspAi: the ESP-AI open platform's device management, on devicecloud's own devices.

A device here is the same row EzData knows by its token: `/devices/add` binds its MAC to an agent
(and so to the agent's account), third parties list, change and unbind an account's devices, and
the firmware's WebSocket keeps the record filled in. A device is online while any live connection
of it exists, whatever the transport.
"""

from __future__ import annotations

import logging
from typing import Any

from devicecloud.core import espai_values as v
from devicecloud.core.errors import (
    Conflict,
    DeviceCloudError,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from devicecloud.core.espai_models import (
    REPORTED,
    UPDATABLE,
    Agent,
    DeviceQuery,
    EspAiDevice,
    Firmware,
)
from devicecloud.core.events import (
    DeviceBound,
    DeviceReleased,
    EspAiMessage,
)
from devicecloud.core.ids import is_token, new_token, normalise_mac, now_ms
from devicecloud.core.models import Account
from devicecloud.core.ports import Blobs, Bus, Presence, Spool, Store
from devicecloud.core.service import DeviceCloud, safe_file_name

log = logging.getLogger(__name__)
# A device whose firmware socket closed this recently (a reboot to check for an update) still
# says whose images its address may be offered.
RECENT_SOCKET_MS = 10 * 60 * 1000


class Unbound(DeviceCloudError):
    """The device is not (or no longer) bound to the agent it names."""


class EspAi:
    """Agents, the ESP-AI device records of accounts, firmware images and device presence."""

    def __init__(self, store: Store, bus: Bus, blobs: Blobs, cloud: DeviceCloud,
                 presence: Presence, default_voice_server: str = "") -> None:
        self.store = store
        self.bus = bus
        self.blobs = blobs
        self.cloud = cloud
        self.presence = presence
        self.default_voice_server = default_voice_server

    async def record(self, device: EspAiDevice) -> dict[str, Any]:
        """The device as `/devices/list` shows it."""
        return v.record(device, (await self.presence.status(device.token)).online)

    # Agents --------------------------------------------------------------------------------

    async def create_agent(self, account: Account, name: object,
                           server_url: object = "") -> Agent:
        """A new agent with a fresh 32-hex `api_key`; `server_url` is its voice server."""
        now = now_ms()
        agent = Agent(new_token(), account.id, _agent_name(name), new_token(),
                      _server_url(server_url), now, now)
        await self.store.create_agent(agent)
        return agent

    async def agents_of(self, account: Account) -> list[Agent]:
        return await self.store.agents_of(account.id)

    async def agent(self, account: Account, agent_id: object) -> Agent:
        """The account's agent with this id (equipment_id); NotFound otherwise."""
        agent = await self.store.agent_by_id(agent_id) if is_token(agent_id) else None
        if agent is None or agent.account_id != account.id:
            raise NotFound("超体不存在")
        return agent

    async def update_agent(self, account: Account, agent_id: object, *, name: object = None,
                           server_url: object = None) -> Agent:
        """Rename the agent or change its voice server (None: leave as is)."""
        agent = await self.agent(account, agent_id)
        changes: dict[str, str] = {}
        if name is not None:
            changes["name"] = agent.name = _agent_name(name)
        if server_url is not None:
            changes["server_url"] = agent.server_url = _server_url(server_url)
        if changes:
            agent.updated_at = now_ms()
            await self.store.update_agent(agent.id, changes, agent.updated_at)
        return agent

    async def regenerate_agent_key(self, account: Account, agent_id: object) -> Agent:
        """A new `api_key`; devices set up with the old one must be set up again."""
        agent = await self.agent(account, agent_id)
        agent.api_key, agent.updated_at = new_token(), now_ms()
        await self.store.update_agent(agent.id, {"api_key": agent.api_key}, agent.updated_at)
        return agent

    async def delete_agent(self, account: Account, agent_id: object) -> None:
        """Delete the agent; its devices are unbound and told so."""
        agent = await self.agent(account, agent_id)
        self._released(await self.store.delete_agent(agent.id, now_ms()))

    async def server_info(self, api_key: object) -> dict[str, Any]:
        """Where the voice server of the agent owning `api_key` lives."""
        if not isinstance(api_key, str) or not api_key:
            raise v.MissingParameter("api_key")
        agent = await self.store.agent_by_api_key(api_key)
        if agent is None:
            raise NotFound(v.AGENT_NOT_FOUND)
        url = agent.server_url or self.default_voice_server
        if not url:
            raise NotFound(v.NO_VOICE_SERVER)
        return v.voice_server(url)

    # The third-party API ---------------------------------------------------------------------

    async def list_devices(self, account: Account,
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

    async def device(self, account: Account, public_id: object) -> EspAiDevice:
        """The account's device with this id; another account's device is NotFound too."""
        if public_id is None or public_id == "":
            raise v.MissingParameter("id")
        if not isinstance(public_id, str):
            raise InvalidRequest("参数类型错误:id 应为字符串")
        device = await self.store.espai_device(account.id, public_id)
        if device is None:
            raise NotFound(v.DEVICE_NOT_FOUND)
        return device

    async def update_device(self, account: Account, doc: dict[str, Any]) -> dict[str, Any]:
        """Change some fields of the device `doc["id"]`; the fields that changed, and the update
        time. `localData` is stored and sent to the device if it is connected."""
        device = await self.device(account, doc.get("id"))
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

    async def delete_devices(self, account: Account, ids: list[str]) -> None:
        """Unbind those devices of the account, all or none (NotFound if any id is not one)."""
        if not ids:
            raise InvalidRequest(v.NOTHING_TO_UNBIND)
        tokens = await self.store.espai_release(account.id, ids, now_ms())
        if tokens is None:
            raise NotFound(v.DEVICE_NOT_FOUND)
        self._released(tokens)

    async def unbind_device(self, account: Account, doc: dict[str, Any]) -> None:
        """Unbind the device with MAC `doc["device_id"]` from the agent `doc["api_key"]`."""
        api_key = v.required_text(doc, "api_key", 64)
        mac = _mac(v.required_text(doc, "device_id", 64))
        agent = await self.store.agent_by_api_key(api_key)
        if agent is None or agent.account_id != account.id:
            raise NotFound(v.AGENT_NOT_FOUND)
        device = await self.store.espai_device_by_mac(mac)
        if device is None or device.owner_id != account.id or device.agent_id != agent.id:
            raise NotFound(v.DEVICE_NOT_FOUND)
        await self.delete_devices(account, [device.public_id])

    async def set_mask_wifi_pwd(self, account: Account, on: bool) -> None:
        """Whether the account's API results show `wifi_pwd` as `******`."""
        await self.store.set_mask_wifi_pwd(account.id, on)

    async def mask_wifi_pwd(self, account: Account) -> bool:
        return await self.store.mask_wifi_pwd(account.id)

    def _released(self, tokens: list[str]) -> None:
        for token in tokens:
            self.bus.publish(DeviceReleased(token))

    # Pushes a console may offer ----------------------------------------------------------------

    async def send_message(self, account: Account, public_id: object, text: str) -> None:
        """Show or log `text` on the device if it is connected."""
        device = await self.device(account, public_id)
        self.bus.publish(EspAiMessage(device.token, {"type": "message", "message": text}))

    async def ask_local_data(self, account: Account, public_id: object) -> None:
        """Ask the connected device to report its local data (kept when it answers)."""
        device = await self.device(account, public_id)
        self.bus.publish(EspAiMessage(device.token, {"type": "get_local_data"}))

    async def push_ota(self, account: Account, public_id: object, base_url: str) -> Firmware:
        """Tell the connected device to install the newest image of its `bin_id` now."""
        device = await self.device(account, public_id)
        image = await self.store.latest_firmware(account.id, device.text["bin_id"] or "")
        if image is None:
            raise NotFound(v.FIRMWARE_NOT_FOUND)
        self.bus.publish(EspAiMessage(device.token, {
            "type": "ota_update", "url": firmware_url(base_url, image)}))
        return image

    # The firmware's side -------------------------------------------------------------------------

    async def add_device(self, doc: dict[str, Any]) -> EspAiDevice:
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

    # Firmware ----------------------------------------------------------------------------------

    async def upload_firmware(self, account: Account, bin_id: object, version: object,
                              file_name: str, data: bytes | Spool) -> Firmware:
        """Keep an image (bytes, or a spool of the blob store) once every check has passed. A
        `bin_id` is the account's own: `query_new_ota` offers the newest image of it only to
        devices of this account. Refused, nothing is kept."""
        checked_bin = v.check_bin_id(bin_id)
        if version is None or version == "":
            raise v.MissingParameter("version")
        checked_version = v.text_of(version, "version", 64)
        size = len(data) if isinstance(data, bytes) else data.size
        if not size:
            raise InvalidRequest("参数错误:固件文件为空")
        base = safe_file_name(file_name)
        image = Firmware(new_token(), account.id, checked_bin, checked_version,
                         base if "." in base else f"{base}.bin", size, now_ms())
        if isinstance(data, bytes):
            await self.blobs.put(image.id, data)
        else:
            await data.keep(image.id)
        try:
            problem = await self.store.add_firmware(image)
        except BaseException:
            await self.blobs.delete([image.id])
            raise
        if problem is not None:
            await self.blobs.delete([image.id])
            raise Conflict(v.VERSION_EXISTS)
        return image

    async def firmware_of(self, account: Account) -> list[Firmware]:
        return await self.store.firmware_of(account.id)

    async def delete_firmware(self, account: Account, firmware_id: object) -> Firmware:
        """Delete the account's image and its file; it is no longer offered or served."""
        image = None
        if is_token(firmware_id):
            image = await self.store.delete_firmware(account.id, firmware_id)
        if image is None:
            raise NotFound(v.FIRMWARE_NOT_FOUND)
        await self.blobs.delete([image.id])
        return image

    async def get_firmware(self, firmware_id: str) -> Firmware:
        image = await self.store.get_firmware(firmware_id) if is_token(firmware_id) else None
        if image is None:
            raise NotFound(v.FIRMWARE_NOT_FOUND)
        return image

    async def firmware_socket(self, device: EspAiDevice, address: str) -> None:
        """Remember where the device's firmware socket comes from (see `query_ota`)."""
        if address:
            await self.store.set_firmware_address(device.row_id, address[:64])

    async def query_ota(self, version: str, bin_id: str, base_url: str, *, address: str = "",
                        api_key: str = "", device_id: str = "") -> dict[str, Any]:
        """`query_new_ota`: the newest image of `bin_id` of the asking device's account;
        `latest` unless its version differs. Nothing newer when the account is unknown."""
        account_id = await self._asking_account(address, api_key, device_id)
        image = None
        if account_id is not None and bin_id:
            image = await self.store.latest_firmware(account_id, bin_id)
        if image is None:
            return {"latest": True, "bin_url": ""}
        return {"latest": version == image.version, "bin_url": firmware_url(base_url, image)}

    async def _asking_account(self, address: str, api_key: str, device_id: str) -> int | None:
        """The account of the device asking for an update: the owner of the agent `api_key` if
        it sends one; else the one account whose devices' firmware sockets come from `address`
        now or did within `RECENT_SOCKET_MS` (narrowed to `device_id` if sent). None when no
        account, or more than one, fits: then nothing is offered."""
        if api_key:
            agent = await self.store.agent_by_api_key(api_key)
            return agent.account_id if agent is not None else None
        if not address:
            return None
        mac = None
        if device_id:
            try:
                mac = normalise_mac(device_id)
            except InvalidRequest:
                return None
        candidates = [row for row in await self.store.firmware_devices_at(address)
                      if mac is None or row[1] == mac]
        online = await self.presence.online([token for token, *_ in candidates])
        recent = now_ms() - RECENT_SOCKET_MS
        owners = {owner for token, _, owner, seen in candidates
                  if token in online or seen >= recent}
        return owners.pop() if len(owners) == 1 else None


def firmware_url(base_url: str, image: Firmware) -> str:
    return f"{base_url}/firmware/{image.id}/{image.file_name}"


def firmware_record(image: Firmware, base_url: str) -> dict[str, Any]:
    return {"id": image.id, "bin_id": image.bin_id, "version": image.version,
            "file_name": image.file_name, "size": image.size, "create_time": image.created_at,
            "bin_url": firmware_url(base_url, image)}


def _mac(device_id: str) -> str:
    try:
        return normalise_mac(device_id)
    except InvalidRequest:
        raise InvalidRequest("参数错误:device_id 不是有效的 MAC 地址") from None


def _agent_name(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequest("an agent needs a name")
    if len(raw.strip()) > 100:
        raise InvalidRequest("an agent's name has at most 100 characters")
    return raw.strip()


def _server_url(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidRequest("the voice server address must be text")
    url = raw.strip()
    if url:
        v.voice_server(url)
    return url
