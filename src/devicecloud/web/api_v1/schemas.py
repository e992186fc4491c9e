"""Request and response shapes of /api/v1 (pydantic): request bodies are checked against them
(a mismatch is a 422 naming the field), and /openapi.json is made from them."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, ValidationError

from devicecloud.core.device_profiles import MAX_DESCRIPTION, MAX_DEVICE_NAME, MAX_TAG, MAX_TAGS
from devicecloud.web.api_v1.paging import DEFAULT_LIMIT, MAX_LIMIT
from devicecloud.web.api_v1.problems import WrongShape

DEVICE_ID = "9f0c4e1ab2d34c5e8f6a7b8c9d0e1f2a"
TOKEN = "4fbb52fb5b6243e083377f45d216820f"

Model = TypeVar("Model", bound=BaseModel)


def checked(model: type[Model], doc: Any) -> Model:
    """`doc` as `model`, or WrongShape naming the first offending field."""
    try:
        return model.model_validate(doc, strict=True)
    except ValidationError as problem:
        error = problem.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise WrongShape(f"{where}: {error['msg']}") from None


class Problem(BaseModel):
    """An RFC 9457 problem (`application/problem+json`): `detail` names the offending part."""

    type: str = Field(examples=["/problems/not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no device of this account has the id '9f0c...'"])


class FieldOut(BaseModel):
    """A field's current value."""

    name: str = Field(examples=["temperature"])
    value: Any = Field(examples=[21.5])
    data_type: str = Field(examples=["number"], description="number, string, dict, array, file")
    updated: int = Field(description="epoch ms of the last change")


class DeviceOut(BaseModel):
    """A device of the account."""

    id: str = Field(examples=[DEVICE_ID], description="the public 32-hex id (never the token)")
    name: str = Field(examples=["greenhouse"])
    description: str
    mac: str = Field(examples=["aabbccddeeff"])
    device_type: str = Field(examples=["basic"])
    tags: list[str] = Field(examples=[["garden", "sensors"]])
    online: bool
    transports: list[str] = Field(examples=[["ws"]], description="how it is connected now")
    last_seen: int | None = Field(description="epoch ms (now while online)")
    created: int
    updated: int


class DeviceDetail(DeviceOut):
    """A device of the account, with its fields."""

    fields: list[FieldOut]


class DevicePage(BaseModel):
    """A page of the account's devices, oldest first."""

    items: list[DeviceOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: "
                                                "no more")


class FieldList(BaseModel):
    """A page of the device's fields, by name."""

    items: list[FieldOut]
    next_cursor: str | None


class DevicesQuery(BaseModel):
    q: str | None = Field(None, description="a substring of the name (any case) or the MAC")
    tag: str | None = Field(None, description="only devices with this tag")
    online: bool | None = Field(None, description="1: only online devices, 0: only offline ones")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, description="`next_cursor` of the previous page")


class PageQuery(BaseModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, description="`next_cursor` of the previous page")


class BindRequest(BaseModel):
    """Exactly one of the device's token or the pairing code it shows."""

    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(None, examples=[TOKEN])
    pair_code: str | None = Field(None, examples=["K7QM-4XPA"])


Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG)]


class DevicePatch(BaseModel):
    """What to change; what is left out stays. `tags` replaces all the tags."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=MAX_DEVICE_NAME, examples=["greenhouse"])
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    tags: list[Tag] | None = Field(None, max_length=MAX_TAGS, examples=[["garden"]])


class FieldPut(BaseModel):
    """The new value (any JSON value), and optionally its data type."""

    model_config = ConfigDict(extra="forbid")

    value: Any = Field(examples=[1])
    data_type: str | None = Field(None, examples=["number"])


class HistoryQuery(BaseModel):
    from_: str | None = Field(None, alias="from", description="epoch ms or RFC 3339 (included)")
    to: str | None = Field(None, description="epoch ms or RFC 3339 (excluded)")
    aggregate: str | None = Field(None, description="raw (default), 1m, 1h or 1d")
    format: str | None = Field(None, description="json (default, paged), csv or ndjson "
                                                 "(the whole range, streamed)")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, description="`next_cursor` of the previous page")


class HistoryItem(BaseModel):
    """A raw row `{t, value}`, or a bucket `{t, min, max, mean, count, last}` (`t` its start)."""

    t: int = Field(description="epoch ms")
    value: Any = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    count: int | None = None
    last: float | None = None


class HistoryPage(BaseModel):
    """A page of a field's history, oldest first."""

    items: list[HistoryItem]
    next_cursor: str | None


class HistoryPoint(BaseModel):
    t: int = Field(examples=[1767225600000], description="epoch ms")
    value: Any = Field(examples=[21.5])


class BackfillPoints(RootModel[list[HistoryPoint]]):
    """The points to import, oldest or newest first (or as CSV `t,value`)."""


class BackfillOut(BaseModel):
    """How many points were imported, and the field after."""

    imported: int
    value_changed: bool = Field(description="whether the newest point became the value")
    field: FieldOut
