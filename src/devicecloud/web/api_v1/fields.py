"""/api/v1/devices/{id}/fields: a device's current values, and user edits of them, pushed to the
device as the console's are (109 new, 107 changed, 108 deleted)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from devicecloud.web.api_v1 import schemas as s
from devicecloud.web.api_v1.auth import account_of
from devicecloud.web.api_v1.devices import body_of, field_doc, owned_profile
from devicecloud.web.api_v1.paging import cursor_of, limit_of, page_of
from devicecloud.web.api_v1.problems import answers
from devicecloud.web.responses import json_response
from devicecloud.web.services import services


@answers
async def list_fields(request: Request) -> Response:
    """The device's fields by name, with their current values."""
    account = await account_of(request)
    params = request.query_params
    limit, after = limit_of(params), cursor_of(params, (str,))
    profile = await owned_profile(request, account)
    fields = sorted(await services(request).cloud.list_fields(profile.device),
                    key=lambda field: field.name)
    if after is not None:
        fields = [field for field in fields if field.name > str(after[0])]
    shown = fields[:limit]
    more = len(fields) > limit
    return json_response(page_of([field_doc(field) for field in shown],
                                 (shown[-1].name,) if more else None))


@answers
async def put_field(request: Request) -> Response:
    """Set the field (made if new) as a user edit: the device gets 109 or 107."""
    account = await account_of(request)
    profile = await owned_profile(request, account)
    put = s.checked(s.FieldPut, await body_of(request))
    field = await services(request).cloud.upsert_field(
        profile.device, request.path_params["name"], put.value, data_type=put.data_type,
        source="user")
    return json_response(field_doc(field))


@answers
async def delete_field(request: Request) -> Response:
    """Delete the field and its history as a user edit: the device gets 108."""
    account = await account_of(request)
    profile = await owned_profile(request, account)
    await services(request).cloud.delete_field(profile.device, request.path_params["name"],
                                               source="user")
    return Response(status_code=204)
