"""What the application's lifespan opens, handed to every request and WebSocket as lifespan
state: `services(connection)` inside a handler, `started(state)` outside one (the server's stop)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from starlette.requests import HTTPConnection

from devicecloud.bus.memory import MemoryBus
from devicecloud.bus.redis import RedisBus
from devicecloud.config import Settings
from devicecloud.core.accounts import Accounts
from devicecloud.core.espai.platform import EspAi
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.mqtt_bridge import MqttBridge
from devicecloud.gateways.mqtt_listener import MqttListener
from devicecloud.gateways.presence import LocalPresence
from devicecloud.limits import Limits
from devicecloud.tls import Certificates

if TYPE_CHECKING:  # the console reads its services from here
    from devicecloud.web.console import Console


@dataclass(frozen=True, slots=True)
class Services:
    """The core, its adapters and the transports of one running process."""

    settings: Settings
    cloud: DeviceCloud
    accounts: Accounts
    espai: EspAi
    bus: MemoryBus | RedisBus
    hub: Hub
    presence: LocalPresence
    limits: Limits
    console: Console
    mqtt: MqttListener | MqttBridge | None
    """The built-in MQTT listener, the bridge to an external broker, or neither."""
    tls: Certificates | None = None
    """The certificate store of this process's TLS listeners, when it serves TLS itself."""


class LifespanState(TypedDict):
    """What the lifespan yields; Starlette copies it into every connection's scope."""

    services: Services


def services(connection: HTTPConnection) -> Services:
    """The services of the process serving this request or WebSocket."""
    found: Services = connection.scope["state"]["services"]
    return found


def started(state: Mapping[str, Any]) -> Services | None:
    """The services in a lifespan's state, once its start has completed."""
    found: Services | None = state.get("services")
    return found
