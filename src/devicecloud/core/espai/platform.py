"""EspAi: the agents, devices and firmware services of one process, over one store."""

from __future__ import annotations

from devicecloud.core.espai.agents import Agents
from devicecloud.core.espai.devices import EspAiDevices
from devicecloud.core.espai.firmware import Firmwares
from devicecloud.core.ports import Blobs, Bus, Presence, Store


class EspAi:
    """The ESP-AI services of one process: agents, devices and firmware over one store."""

    def __init__(self, store: Store, bus: Bus, blobs: Blobs, presence: Presence,
                 default_voice_server: str = "") -> None:
        self.agents = Agents(store, bus, default_voice_server)
        self.devices = EspAiDevices(store, bus, presence)
        self.firmware = Firmwares(store, bus, blobs, presence, self.devices)
