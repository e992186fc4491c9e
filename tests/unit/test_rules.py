"""The core's rules, and the EzData envelope, without any I/O."""

from __future__ import annotations

import pytest

from devicecloud.core.errors import InvalidRequest
from devicecloud.core.ids import is_token, new_token, normalise_mac
from devicecloud.core.models import data_type_of, deduplicated_name
from devicecloud.core.service import safe_file_name
from devicecloud.protocols import ezdata


@pytest.mark.parametrize("raw", ["AABBCCDDEEFF", "aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF",
                                 " aabbccddeeff ", "aA:Bb:cC:dD:eE:fF"])
def test_mac_spellings_normalise(raw: str) -> None:
    assert normalise_mac(raw) == "aabbccddeeff"


@pytest.mark.parametrize("raw", ["", "AABBCCDDEE", "AABBCCDDEEFF00", "GGBBCCDDEEFF", None, 1])
def test_invalid_macs_are_refused(raw: object) -> None:
    with pytest.raises(InvalidRequest):
        normalise_mac(raw)


def test_tokens_are_32_lowercase_hex() -> None:
    token = new_token()
    assert is_token(token) and not is_token(token.upper()) and not is_token(token[:31])


def test_name_deduplication() -> None:
    assert deduplicated_name("a", set()) == "a"
    assert deduplicated_name("a", {"a"}) == "a(1)"
    assert deduplicated_name("a", {"a", "a(1)", "a(3)"}) == "a(2)"


@pytest.mark.parametrize(("value", "declared", "expected"), [
    (1, None, "number"), (1.5, "double", "number"), (2, "int", "number"), (True, None, "number"),
    ("x", None, "string"), ({"a": 1}, None, "dict"), ([1], None, "array"),
    ("http://h/f.png", "file", "file"), ("x", "nonsense", "string"), (None, None, "string"),
])
def test_data_types(value: object, declared: object, expected: str) -> None:
    assert data_type_of(value, declared) == expected


@pytest.mark.parametrize(("raw", "safe"), [
    ("/flash/res/img/x.png", "x.png"), ("../../etc/passwd", "passwd"),
    ("..\\..\\a.jpg", "a.jpg"), ("", "file"), ("..", "file"), ("a b;rm -rf.bmp", "a b_rm -rf.bmp"),
])
def test_safe_file_names(raw: str, safe: str) -> None:
    assert safe_file_name(raw) == safe


def test_envelope_is_compact_with_numeric_codes() -> None:
    assert ezdata.reply(103, []) == b'{"body":[],"cmd":103,"code":200,"msg":"OK"}'
    assert ezdata.error("bad", 101) == b'{"cmd":101,"code":500,"msg":"bad","data":null}'
    assert b'"value":{"relay":1}' in ezdata.reply(107, {}, {"relay": 1}, with_value=True)


def test_parse_messages() -> None:
    assert ezdata.parse('{"deviceToken": "t"}') == ezdata.Login("t")
    assert ezdata.parse('{"deviceToken": "t", "body": "ping"}') == ezdata.Ping("t")
    request = ezdata.parse('{"deviceToken": "t", "body": {"requestType": "DEVICE_DATA_LIST"}}')
    assert isinstance(request, ezdata.Request) and request.cmd == 103
    assert ezdata.parse(b'{"body": {"requestType": "101", "name": "x"}}').cmd == 101  # type: ignore[union-attr]
    for bad in ("{", "[]", '{"body": 3}', '{"body": {"requestType": true}}', "{}"):
        with pytest.raises(ezdata.ProtocolError):
            ezdata.parse(bad)
