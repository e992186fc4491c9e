"""Authentication and authorisation for an external broker (EMQX's HTTP auth and ACL hooks):
a device may connect with its token as username, its `ez{mac}ez`/`m5{mac}m5` client id and no
password, then publish only to its own up topic and subscribe only to its own down topic.

The hooks exist only with `--mqtt-broker`. Only the broker may call them: it sends the shared
secret `DEVICECLOUD_MQTT_HOOK_SECRET` in the `x-devicecloud-hook-secret` header, or, with no secret
configured, it must call from this machine (a loopback address). A body is at most 4 KiB.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devicecloud.config import Settings
from devicecloud.core.errors import DeviceCloudError, TooLarge
from devicecloud.gateways.mqtt_client import BrokerAddress
from devicecloud.protocols.ezdata_mqtt import DeviceAcl, client_id_matches
from devicecloud.web.responses import json_response
from devicecloud.web.services import services
from devicecloud.web.uploads import read_body

ALLOW = {"result": "allow", "is_superuser": False}
DENY = {"result": "deny"}
BODY_LIMIT = 4096
SECRET_HEADER = "x-devicecloud-hook-secret"
Hook = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def _from_broker(request: Request) -> bool:
    """Whether the caller shows the hook secret, or (none configured) calls from loopback."""
    settings = services(request).settings
    if settings.mqtt_hook_secret:
        shown = request.headers.get(SECRET_HEADER, "")
        return hmac.compare_digest(shown.encode(), settings.mqtt_hook_secret.encode())
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hook(handler: Hook) -> Callable[[Request], Awaitable[Response]]:
    """Refuse callers other than the broker (403) and bodies over `BODY_LIMIT` (413) before
    reading; hand the JSON object (or `{}`) to the handler."""

    async def endpoint(request: Request) -> Response:
        if not _from_broker(request):
            return json_response(DENY, 403)
        try:
            raw = await read_body(request, BODY_LIMIT)
        except TooLarge:
            return json_response(DENY, 413)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = {}
        return await handler(request, doc if isinstance(doc, dict) else {})

    return endpoint


def _is_service(settings: Settings, username: object, password: object) -> bool:
    if not settings.mqtt_broker or not isinstance(username, str):
        return False
    service = BrokerAddress.parse(settings.mqtt_broker)
    return (service.username == username and service.password is not None
            and hmac.compare_digest(service.password.encode(), str(password).encode()))


@hook
async def mqtt_auth(request: Request, doc: dict[str, Any]) -> Response:
    settings = services(request).settings
    username, password = doc.get("username"), doc.get("password") or ""
    if _is_service(settings, username, password):
        return json_response({"result": "allow", "is_superuser": True})
    try:
        device = await services(request).cloud.authenticate(username)
    except DeviceCloudError:
        return json_response(DENY)
    client_id = doc.get("clientid")
    if password or not isinstance(client_id, str) or not client_id_matches(client_id, device.mac):
        return json_response(DENY)
    return json_response(ALLOW)


@hook
async def mqtt_acl(request: Request, doc: dict[str, Any]) -> Response:
    username, topic, action = doc.get("username"), doc.get("topic"), doc.get("action")
    if not isinstance(username, str) or not isinstance(action, str) or not isinstance(topic, str):
        return json_response(DENY)
    if not DeviceAcl.of(username).allows(action, topic):
        return json_response(DENY)
    try:
        await services(request).cloud.authenticate(username)
    except DeviceCloudError:
        return json_response(DENY)
    return json_response({"result": "allow"})


def routes(settings: Settings) -> list[BaseRoute]:
    """The hooks, only when devicecloud works behind an external broker."""
    if not settings.mqtt_broker:
        return []
    return [Route("/mqtt/auth", mqtt_auth, methods=["POST"]),
            Route("/mqtt/acl", mqtt_acl, methods=["POST"])]
