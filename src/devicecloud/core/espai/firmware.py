"""ESP-AI firmware images: an account's uploads, the update offered to a device that asks, and
an update pushed to a connected device."""

from __future__ import annotations

from typing import Any

from devicecloud.core.errors import Conflict, InvalidRequest, NotFound
from devicecloud.core.espai import values as v
from devicecloud.core.espai.devices import EspAiDevices
from devicecloud.core.espai.models import EspAiDevice, Firmware
from devicecloud.core.events import EspAiMessage
from devicecloud.core.ids import is_token, new_token, normalise_mac, now_ms
from devicecloud.core.models import Account
from devicecloud.core.ports import Blobs, Bus, EspAiStore, Presence, Spool
from devicecloud.core.service import safe_file_name

# A device whose firmware socket closed this recently (a reboot to check for an update) still
# says whose images its address may be offered.
RECENT_SOCKET_MS = 10 * 60 * 1000


class Firmwares:
    """Keep, list, serve and delete an account's images; offer and push updates."""

    def __init__(self, store: EspAiStore, bus: Bus, blobs: Blobs, presence: Presence,
                 devices: EspAiDevices) -> None:
        self.store = store
        self.bus = bus
        self.blobs = blobs
        self.presence = presence
        self.devices = devices

    async def upload(self, account: Account, bin_id: object, version: object,
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

    async def of(self, account: Account) -> list[Firmware]:
        return await self.store.firmware_of(account.id)

    async def delete(self, account: Account, firmware_id: object) -> Firmware:
        """Delete the account's image and its file; it is no longer offered or served."""
        image = None
        if is_token(firmware_id):
            image = await self.store.delete_firmware(account.id, firmware_id)
        if image is None:
            raise NotFound(v.FIRMWARE_NOT_FOUND)
        await self.blobs.delete([image.id])
        return image

    async def get(self, firmware_id: str) -> Firmware:
        image = await self.store.get_firmware(firmware_id) if is_token(firmware_id) else None
        if image is None:
            raise NotFound(v.FIRMWARE_NOT_FOUND)
        return image

    async def push(self, account: Account, public_id: object, base_url: str) -> Firmware:
        """Tell the connected device to install the newest image of its `bin_id` now."""
        device = await self.devices.get(account, public_id)
        image = await self.store.latest_firmware(account.id, device.text["bin_id"] or "")
        if image is None:
            raise NotFound(v.FIRMWARE_NOT_FOUND)
        self.bus.publish(EspAiMessage(device.token, {
            "type": "ota_update", "url": firmware_url(base_url, image)}))
        return image

    async def socket_from(self, device: EspAiDevice, address: str) -> None:
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
