"""/api/v1/devices: the account's devices by public id; binding one (by token or pairing code,
as the console binds: push 106), listing, naming, tagging and releasing them."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from devicecloud.core.device_profiles import DeviceProfile, ProfileChanges, ProfileQuery
from devicecloud.core.errors import InvalidRequest, NotFound, TooMany
from devicecloud.core.ids import is_token, now_ms
from devicecloud.core.models import Account, Device, Field
from devicecloud.core.pairing import normalise_pair_code
from devicecloud.web.api_v1 import schemas as s
from devicecloud.web.api_v1.auth import account_of
from devicecloud.web.api_v1.paging import cursor_of, limit_of, page_of
from devicecloud.web.api_v1.problems import WrongShape, answers
from devicecloud.web.console.pages import client_address
from devicecloud.web.console.state import (
    PAIRINGS_EVERYWHERE,
    PAIRINGS_PER_ACCOUNT,
    PAIRINGS_PER_ADDRESS,
)
from devicecloud.web.requests import json_body
from devicecloud.web.responses import json_response
from devicecloud.web.services import Services, services

BAD_JSON = "body: not valid JSON"
ONLINE_VALUES = {"1": True, "true": True, "0": False, "false": False}


async def body_of(request: Request) -> Any:
    """The request's JSON body (a 400 naming `body` if it is not JSON)."""
    return await json_body(request, BAD_JSON)


async def owned_profile(request: Request, account: Account) -> DeviceProfile:
    """The account's device named by the path's `id` (404 for anyone else's)."""
    return await services(request).cloud.profiles.owned(account, request.path_params["id"])


def field_doc(field: Field) -> dict[str, Any]:
    return {"name": field.name, "value": field.value, "data_type": field.data_type,
            "updated": field.updated_at}


async def device_doc(running: Services, profile: DeviceProfile) -> dict[str, Any]:
    """The device as the API shows it, with its presence as the console decides it."""
    device = profile.device
    status = await running.presence.status(device.token)
    return {"id": profile.public_id, "name": profile.name, "description": profile.description,
            "mac": device.mac, "device_type": device.device_type, "tags": profile.tags,
            "online": status.online, "transports": list(status.transports),
            "last_seen": now_ms() if status.online else device.last_seen_at,
            "created": device.created_at, "updated": device.updated_at}


def _online_filter(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    if raw.lower() not in ONLINE_VALUES:
        raise InvalidRequest(f"online: must be 1 or 0, not {raw[:20]!r}")
    return ONLINE_VALUES[raw.lower()]


@answers
async def list_devices(request: Request) -> Response:
    """The account's devices, oldest first, filtered by `q`, `tag` and `online`."""
    account = await account_of(request)
    running, params = services(request), request.query_params
    after = cursor_of(params, (int,))
    query = ProfileQuery(account.id, limit_of(params), int(after[0]) if after else 0,
                         params.get("q") or None, params.get("tag") or None)
    items, more = await _matching(running, query, _online_filter(params.get("online")))
    docs = await asyncio.gather(*(device_doc(running, profile) for profile in items))
    return json_response(page_of(list(docs), (items[-1].device.id,) if more else None))


async def _matching(running: Services, query: ProfileQuery,
                    online: bool | None) -> tuple[list[DeviceProfile], bool]:
    """Up to `query.limit` devices matching it and `online` (None: either), and whether more
    may follow them. With `online`, a batch may be filtered out whole: read on until full."""
    items: list[DeviceProfile] = []
    while True:
        batch = await running.cloud.profiles.page(query)
        kept = batch
        if online is not None:
            live = await running.presence.online([p.device.token for p in batch])
            kept = [p for p in batch if (p.device.token in live) == online]
        room = query.limit - len(items)
        items += kept[:room]
        if len(kept) > room:
            return items, True
        if len(batch) < query.limit:
            return items, False
        if len(items) == query.limit:
            return items, True
        query = replace(query, after=batch[-1].device.id)


async def _bind_by_pair_code(request: Request, account: Account, raw: str) -> Device:
    """As the console binds by code: wrong codes count per account, address and service."""
    running = services(request)
    try:
        code = normalise_pair_code(raw)
    except InvalidRequest as problem:
        raise WrongShape(f"pair_code: {problem}") from None
    attempt = await running.console.throttle.attempt(
        (PAIRINGS_PER_ACCOUNT, str(account.id)), (PAIRINGS_PER_ADDRESS, client_address(request)),
        (PAIRINGS_EVERYWHERE, "all"))
    if attempt.wait:
        raise TooMany(f"pair_code: too many wrong pairing codes, retry in {attempt.wait} s",
                      attempt.wait)
    try:
        device = await running.cloud.bind_by_pair_code(code, account)
    except NotFound as problem:  # a wrong code stays counted
        raise NotFound(f"pair_code: {problem}") from None
    except BaseException:
        await attempt.forgive()
        raise
    await attempt.forgive()
    return device


@answers
async def bind_device(request: Request) -> Response:
    """Bind a device by its token or pairing code; push 106 tells it."""
    account = await account_of(request)
    bind = s.checked(s.BindRequest, await body_of(request))
    running = services(request)
    if (bind.token is None) == (bind.pair_code is None):
        raise WrongShape("body: give exactly one of `token` and `pair_code`")
    if bind.token is not None:
        token = bind.token.strip().lower()
        if not is_token(token):
            raise WrongShape("token: a device token is 32 hexadecimal characters")
        found = await running.cloud.store.device_by_token(token)
        if found is None:
            raise NotFound("token: no device has this token (has it registered yet?)")
        await running.cloud.bind(found, account)
        device = found
    else:
        device = await _bind_by_pair_code(request, account, bind.pair_code or "")
    profile = await running.cloud.profiles.owned_by_device(account, device)
    return json_response(await device_doc(running, profile))


@answers
async def get_device(request: Request) -> Response:
    """One device, with its fields."""
    account = await account_of(request)
    running = services(request)
    profile = await owned_profile(request, account)
    doc = await device_doc(running, profile)
    doc["fields"] = [field_doc(field) for field in
                     await running.cloud.list_fields(profile.device)]
    return json_response(doc)


@answers
async def patch_device(request: Request) -> Response:
    """Rename, describe or tag a device."""
    account = await account_of(request)
    running = services(request)
    profile = await owned_profile(request, account)
    patch = s.checked(s.DevicePatch, await body_of(request))
    try:
        changed = await running.cloud.profiles.change(
            account, profile, ProfileChanges(patch.name, patch.description, patch.tags))
    except InvalidRequest as problem:
        raise WrongShape(str(problem)) from None
    return json_response(await device_doc(running, changed))


@answers
async def release_device(request: Request) -> Response:
    """Release the device from the account, as the console does; its data stays with it."""
    account = await account_of(request)
    profile = await owned_profile(request, account)
    if not await services(request).cloud.release_owner(profile.device, account.id):
        raise NotFound("this device is no longer this account's")
    return Response(status_code=204)
