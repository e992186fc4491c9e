"""Authentication and authorisation for an external broker (EMQX's HTTP auth and ACL hooks):
a device may connect with its token as username, its `ez{mac}ez`/`m5{mac}m5` client id and no
password, then publish only to its own up topic and subscribe only to its own down topic."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from devicecloud.config import Settings
from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.mqtt_client import BrokerAddress
from devicecloud.protocols.ezdata import client_id_matches, down_topic, up_topic
from devicecloud.web.responses import json_response

ALLOW = {"result": "allow", "is_superuser": False}
DENY = {"result": "deny"}


async def _body(request: Request) -> dict[str, Any]:
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _is_service(settings: Settings, username: object, password: object) -> bool:
    if not settings.mqtt_broker or not isinstance(username, str):
        return False
    service = BrokerAddress.parse(settings.mqtt_broker)
    return (service.username == username and service.password is not None
            and hmac.compare_digest(service.password.encode(), str(password).encode()))


async def mqtt_auth(request: Request) -> Response:
    doc = await _body(request)
    settings: Settings = request.app.state.settings
    username, password = doc.get("username"), doc.get("password") or ""
    if _is_service(settings, username, password):
        return json_response({"result": "allow", "is_superuser": True})
    cloud: DeviceCloud = request.app.state.cloud
    try:
        device = await cloud.authenticate(username)
    except DeviceCloudError:
        return json_response(DENY)
    client_id = doc.get("clientid")
    if password or not isinstance(client_id, str) or not client_id_matches(client_id, device.mac):
        return json_response(DENY)
    return json_response(ALLOW)


async def mqtt_acl(request: Request) -> Response:
    doc = await _body(request)
    username, topic, action = doc.get("username"), doc.get("topic"), doc.get("action")
    if not isinstance(username, str):
        return json_response(DENY)
    own = {"publish": up_topic(username), "subscribe": down_topic(username)}
    if not isinstance(action, str) or own.get(action) != topic:
        return json_response(DENY)
    cloud: DeviceCloud = request.app.state.cloud
    try:
        await cloud.authenticate(username)
    except DeviceCloudError:
        return json_response(DENY)
    return json_response({"result": "allow"})


def routes() -> list[BaseRoute]:
    return [Route("/mqtt/auth", mqtt_auth, methods=["POST"]),
            Route("/mqtt/acl", mqtt_acl, methods=["POST"])]
