"""The error table: the nearest class of an error answers, for every protocol."""

from __future__ import annotations

import json

from starlette.formparsers import MultiPartException

from devicecloud.core.errors import (
    DeviceCloudError,
    InvalidRequest,
    NotFound,
    StorageFull,
    TooLarge,
    TooMany,
    Unavailable,
)
from devicecloud.core.espai.devices import Unbound
from devicecloud.core.espai.values import MissingParameter
from devicecloud.web.errors import ANSWERS, UNEXPECTED, answer_for, ezdata_refusal, problem


class Unforeseen(NotFound):
    """A subclass the table does not name."""


def test_the_nearest_class_answers() -> None:
    assert answer_for(Unforeseen("x")) is ANSWERS[NotFound]
    assert answer_for(MissingParameter("id")) is ANSWERS[MissingParameter]
    assert answer_for(Unbound("gone")) is ANSWERS[Unbound]
    assert answer_for(DeviceCloudError("x")) is ANSWERS[DeviceCloudError]
    assert answer_for(KeyError("x")) is UNEXPECTED


def test_each_protocol_says_it_its_own_way() -> None:
    missing = answer_for(MissingParameter("id"))
    assert (missing.espai_code, missing.espai_text(MissingParameter("id"))) == (401, "缺失参数:id")
    assert (missing.ezdata_status, missing.status) == (200, 400)
    large = answer_for(TooLarge("request body larger than 10 bytes"))
    assert large.espai_text(TooLarge("ignored")) == "参数错误:请求体过大"
    assert large.ezdata_text(TooLarge("larger")) == "larger"
    malformed = MultiPartException("no boundary")
    form = answer_for(malformed)
    assert form.ezdata_text(malformed) == "malformed multipart body: no boundary"
    assert form.espai_text(malformed) == "参数格式错误:no boundary"
    assert answer_for(StorageFull("full")).espai_code == 507
    assert answer_for(Unavailable("down")).ezdata_status == 503


def test_ezdata_answers_in_its_envelope_with_retry_after() -> None:
    response = ezdata_refusal(TooMany("slow down", 3))
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert json.loads(response.body) == {"code": 500, "msg": "slow down", "data": None}
    assert ezdata_refusal(InvalidRequest("bad")).status_code == 200
    assert json.loads(ezdata_refusal(RuntimeError("secret")).body)["msg"] == "internal error"


def test_problem_json_names_type_title_status_and_detail() -> None:
    response = problem(Unforeseen("no such device"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert json.loads(response.body) == {"type": "/problems/not-found", "title": "Not found",
                                         "status": 404, "detail": "no such device"}
    assert problem(TooMany("later", 2)).headers["retry-after"] == "2"
    failure = json.loads(problem(RuntimeError("a secret path")).body)
    assert failure["status"] == 500 and "secret" not in failure["detail"]
