"""/api/v1's cursors and limits, and the rules for a device's name, description and tags."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from devicecloud.core.device_profiles import check_description, check_device_name, check_tags
from devicecloud.core.errors import InvalidRequest
from devicecloud.web.api_v1.paging import cursor_of, encode_cursor, limit_of, page_of


def test_a_cursor_gives_back_the_key_it_was_made_from() -> None:
    for key, shape in (((7,), (int,)), (("two words/ä",), (str,)), ((1700000000000, 5),
                                                                      (int, int))):
        cursor = encode_cursor(key)
        assert cursor.isascii() and "=" not in cursor
        assert cursor_of(QueryParams({"cursor": cursor}), shape) == key
    assert cursor_of(QueryParams(""), (int,)) is None
    assert page_of([], None) == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("cursor", ["!!", "e30", encode_cursor(("x",)), encode_cursor((1, 2)),
                                    "W3RydWVd", "x" * 600, "é"])
def test_a_cursor_not_made_here_is_refused_naming_cursor(cursor: str) -> None:
    with pytest.raises(InvalidRequest, match=r"^cursor: "):
        cursor_of(QueryParams({"cursor": cursor}), (int,))


def test_limit_defaults_to_100_and_stays_within_1_to_1000() -> None:
    assert limit_of(QueryParams("")) == 100
    assert limit_of(QueryParams("limit=1000")) == 1000
    for bad in ("0", "1001", "-1", "1.5", "x", "١٢"):
        with pytest.raises(InvalidRequest, match=r"^limit: "):
            limit_of(QueryParams({"limit": bad}))


def test_names_descriptions_and_tags() -> None:
    assert check_device_name("  lamp ") == "lamp"
    assert check_tags(["b", " a ", "b"]) == ["a", "b"]
    assert check_description("x" * 2000) == "x" * 2000
    for check, bad, named in ((check_device_name, "x" * 129, "name"),
                              (check_device_name, 3, "name"),
                              (check_description, "x" * 2001, "description"),
                              (check_tags, "a", "tags"), (check_tags, ["a", ""], r"tags\[1\]"),
                              (check_tags, [1], r"tags\[0\]"),
                              (check_tags, ["t"] * 51, "tags")):
        with pytest.raises(InvalidRequest, match=f"^{named}"):
            check(bad)
