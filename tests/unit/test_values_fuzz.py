"""Every codec and body parser fed anything: only its own clean error comes out, and whatever it
accepts can be stored and sent back exactly (the replies encode, no integer became a float)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devicecloud.core.errors import DeviceCloudError, InvalidRequest
from devicecloud.core.espai import values as v
from devicecloud.core.espai.models import UPDATABLE, EspAiDevice
from devicecloud.core.models import (
    LARGEST_INT,
    MAX_DEPTH,
    MAX_DOCUMENT_DEPTH,
    SMALLEST_INT,
    Field,
    encode_value,
    loads,
)
from devicecloud.core.service import check_page, check_value
from devicecloud.protocols import broker_events, ezdata
from devicecloud.web.console import forms

settings.register_profile("fuzz", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fuzz")

# integers reach well beyond 64 bits on both sides
integers = st.integers() | st.integers(-(2**80), 2**80) | st.sampled_from(
    [LARGEST_INT, LARGEST_INT + 1, SMALLEST_INT, SMALLEST_INT - 1, 10**30])
scalars = (st.none() | st.booleans() | integers | st.text(max_size=12)
           | st.floats(allow_nan=False, allow_infinity=False))
shallow = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                       | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=20)


@st.composite
def nested(draw: st.DrawFn) -> Any:
    """A value wrapped in lists and objects up to 300 levels deep."""
    value = draw(shallow)
    for in_list in draw(st.lists(st.booleans(), max_size=300)):
        value = [value] if in_list else {"k": value}
    return value


values = shallow | nested()
digits = st.text(alphabet="0123456789²٣¹⁴-+. e", max_size=40)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def integers_of(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [n for child in value.values() for n in integers_of(child)]
    if isinstance(value, list):
        return [n for child in value for n in integers_of(child)]
    return [value] if type(value) is int else []


def keepable(value: Any, depth: int) -> bool:
    return depth_of(value) <= depth and all(SMALLEST_INT <= n <= LARGEST_INT
                                            for n in integers_of(value))


def replies_encode(value: Any) -> None:
    """The deepest replies that carry a stored value: REST history, WebSocket 103, MQTT push."""
    record = Field("0" * 32, "0" * 32, 1, "v", value, "dict", "0", 1, 1).record()
    orjson.dumps({"code": 200, "msg": "OK", "data": {"rows": [record], "total": 1}})
    ezdata.reply(103, [record])
    ezdata.reply(107, record, value, with_value=True)


# The shared JSON reader ---------------------------------------------------------------------------

@given(values)
def test_loads_accepts_exactly_what_can_be_kept_and_keeps_it_exactly(value: Any) -> None:
    text = json.dumps(value)
    try:
        parsed = loads(text)
    except InvalidRequest:
        assert not keepable(value, MAX_DOCUMENT_DEPTH)
        return
    except orjson.JSONDecodeError:  # orjson's own limits: 1024 levels, finite doubles
        assert depth_of(value) > 1024 or any(abs(n) > 1e308 for n in integers_of(value))
        return
    assert keepable(value, MAX_DOCUMENT_DEPTH)
    assert parsed == json.loads(text) and loads(text.encode()) == parsed
    assert [type(n) for n in integers_of(parsed)] == [int] * len(integers_of(value))


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_loads_of_anything_raises_only_its_two_errors(data: bytes | str) -> None:
    with contextlib.suppress(InvalidRequest, orjson.JSONDecodeError):
        orjson.dumps(loads(data))


@given(values)
def test_check_value_accepts_exactly_what_every_reply_can_carry(value: Any) -> None:
    try:
        check_value(value)
    except DeviceCloudError:
        assert not keepable(value, MAX_DEPTH) or len(orjson.dumps(value)) > 60 * 1024
        return
    assert keepable(value, MAX_DEPTH)
    replies_encode(value)


@given(integers, integers)
def test_history_pages_are_refused_or_in_range(page: int, size: int) -> None:
    try:
        page, size = check_page(page, size)
    except InvalidRequest:
        return
    assert 1 <= page <= 1_000_000 and 1 <= size <= 1000


# The EzData envelope (WebSocket and MQTT) ------------------------------------------------------

request_types = st.sampled_from([100, 101, 102, 103, 104, 112, "103", "DEVICE_DATA_LIST", "²",
                                 "٣", True, None, 1.5]) | integers | st.text(max_size=5)
envelopes = st.fixed_dictionaries(
    {"deviceToken": st.text(max_size=33) | st.none() | integers},
    optional={"body": st.just("ping") | values | st.fixed_dictionaries(
        {"requestType": request_types}, optional={"name": values, "value": values,
                                                  "dataType": values})})
frames = (st.binary(max_size=200) | st.text(max_size=200)
          | envelopes.map(json.dumps) | envelopes.map(lambda doc: json.dumps(doc).encode())
          | st.tuples(st.sampled_from(["get(", "set("]), st.text(max_size=60),
                      values.map(json.dumps)).map(lambda parts: "".join(parts) + ",x)"))


@given(frames)
def test_ezdata_parse_raises_only_protocol_errors(frame: bytes | str) -> None:
    try:
        message = ezdata.parse(frame)
    except ezdata.ProtocolError as problem:
        orjson.loads(ezdata.error(str(problem), problem.cmd))
        return
    if isinstance(message, ezdata.Request) and "value" in message.body:
        with contextlib.suppress(DeviceCloudError):
            check_value(message.body["value"])
            replies_encode(message.body["value"])


@given(st.text(max_size=80), st.binary(max_size=200))
def test_broker_announcements_never_raise(topic: str, payload: bytes) -> None:
    for name in (topic, f"$SYS/brokers/n/clients/{topic}/connected", "$SYS/broker/log/N"):
        broker_events.parse(name, payload)


# The console's forms ----------------------------------------------------------------------------

@given(st.sampled_from([*forms.KINDS, "", "x"]) | st.text(max_size=8),
       digits | st.text(max_size=60) | values.map(json.dumps) | integers.map(str) | st.none())
def test_console_values_are_refused_cleanly_or_kept(kind: str, raw: object) -> None:
    try:
        value, _ = forms.parse_value(kind, raw)
    except InvalidRequest:
        return
    if kind == "number":
        assert not isinstance(value, int) or SMALLEST_INT <= value <= LARGEST_INT
    try:
        check_value(value)
    except DeviceCloudError:
        return
    replies_encode(value)
    forms.shown(value)
    forms.kind_of("number", value)


# The ESP-AI API's bodies ------------------------------------------------------------------------

names = st.sampled_from([*UPDATABLE, "page", "limit", "is_online", "id", "localData", "api_key"])
bodies = st.dictionaries(names | st.text(max_size=6),
                         values | digits | st.sampled_from(["²", "٣", "1", "0", "9" * 40]),
                         max_size=8)


@given(bodies)
def test_espai_fields_are_refused_cleanly(doc: dict[str, Any]) -> None:
    readers: list[Callable[[str], object]] = [
        lambda name: v.optional_text(doc, name), lambda name: v.required_text(doc, name),
        lambda name: v.positive_int(doc, name, 1, v.MAX_PAGE),
        lambda name: v.zero_or_one(v.optional_text(doc, name), name),
        lambda name: v.check_bin_id(doc[name]), lambda name: v.voice_server(str(doc[name]))]
    for name in doc:
        for read in readers:
            with contextlib.suppress(DeviceCloudError):
                read(name)


@given(st.sampled_from(["http://", "ws://", "https://", "wss://", "ftp://", ""]),
       st.text(alphabet="[]:/@a1.%-", max_size=20))
def test_voice_server_addresses_are_refused_cleanly(scheme: str, rest: str) -> None:
    with contextlib.suppress(InvalidRequest):
        v.voice_server(scheme + rest)


@given(values | bodies)
def test_espai_local_data_is_refused_cleanly_or_sent_on(local: Any) -> None:
    try:
        checked = v.local_data_of(local)
    except DeviceCloudError:
        assert not isinstance(local, dict) or not keepable(local, MAX_DEPTH) or len(
            orjson.dumps(local)) > v.LOCAL_DATA_LIMIT
        return
    orjson.dumps({"type": "set_local_data", "data": v.as_device_strings(checked)})


@given(st.text(max_size=20) | digits)
def test_espai_record_with_any_phone(phone: str) -> None:
    device = EspAiDevice(1, "0" * 32, "0" * 32, "aabbccddeeff", None, None, None, 1, 1,
                         text=dict.fromkeys(("ext1", "ext2", "ext3", "name", "enable", "wifi_ssid",
                                             "wifi_pwd", "net_ip", "version", "bin_id", "nation",
                                             "province", "city", "type", "memory", "latitude",
                                             "longitude"), ""), user_phone=phone)
    orjson.dumps(v.record(device, online=False))


def test_the_depth_limit_is_what_the_replies_need() -> None:
    at_limit = json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    replies_encode(at_limit)
    assert encode_value(at_limit) == orjson.dumps(at_limit)
    with pytest.raises(InvalidRequest, match="nested deeper than 32"):
        encode_value([at_limit])
    with pytest.raises(InvalidRequest, match="integer beyond 64 bits"):
        encode_value({"a": [LARGEST_INT + 1]})
