"""EzData's request and push codes: named, on the wire as plain numbers, each request answered."""

from __future__ import annotations

import pytest

from devicecloud.core.events import Change
from devicecloud.gateways.device_session import _HANDLERS
from devicecloud.protocols import ezdata
from devicecloud.protocols.ezdata import Command


def test_a_command_is_sent_as_its_number() -> None:
    assert ezdata.reply(Command.LIST, []) == b'{"body":[],"cmd":103,"code":200,"msg":"OK"}'
    assert ezdata.reply(Command.READ, {}, 1, with_value=True) == (
        b'{"body":{},"cmd":104,"code":200,"msg":"OK","value":1}')
    assert ezdata.error("bad", Command.MODIFY) == b'{"cmd":101,"code":500,"msg":"bad","data":null}'
    assert ezdata.error("bad") == b'{"cmd":500,"code":500,"msg":"bad","data":null}'


@pytest.mark.parametrize(("raw", "command"), [
    (100, Command.ADD), (101, Command.MODIFY), (102, Command.DELETE), (103, Command.LIST),
    (104, Command.READ), (112, Command.PAIR_CODE), ('"103"', Command.LIST),
    ('" 101 "', Command.MODIFY), ('"DEVICE_DATA_LIST"', Command.LIST),
])
def test_request_types_parse_to_their_command(raw: object, command: Command) -> None:
    request = ezdata.parse(f'{{"body": {{"requestType": {raw}}}}}')
    assert isinstance(request, ezdata.Request) and request.cmd is command


@pytest.mark.parametrize(("raw", "message"), [
    ("105", "unknown requestType: 105"), ("500", "unknown requestType: 500"),
    ("101.0", "unknown requestType: 101.0"), ('"²"', "unknown requestType: ²"),
    ("[101]", "unknown requestType: [101]"), ("true", "requestType must be a number"),
    ("null", "missing requestType"),
])
def test_other_request_types_are_refused_as_before(raw: str, message: str) -> None:
    with pytest.raises(ezdata.ProtocolError) as refused:
        ezdata.parse(f'{{"body": {{"requestType": {raw}}}}}')
    assert str(refused.value) == message and refused.value.cmd == Command.ERROR


def test_text_commands_are_a_read_and_an_upsert() -> None:
    assert ezdata.parse("get(t,relay)") == ezdata.Request("t", Command.READ, {"name": "relay"})
    upsert = ezdata.parse('set(t,relay,{"on": 1, "at": 2},dict)')
    assert upsert == ezdata.Request("t", Command.MODIFY, {
        "name": "relay", "value": {"on": 1, "at": 2}, "dataType": "dict"}, upsert=True)


def test_every_request_type_has_a_handler() -> None:
    assert set(_HANDLERS) == set(ezdata.REQUESTS.values())


def test_each_change_is_announced_by_its_push() -> None:
    pushes = {Change.ADDED: Command.ADDED, Change.MODIFIED: Command.MODIFIED,
              Change.DELETED: Command.DELETED, Change.FILE: Command.FILE_UPLOADED}
    assert set(pushes) == set(Change)
    for change, push in pushes.items():
        assert change.value == push
