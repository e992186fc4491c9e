"""Every error as each protocol answers it: one table from error class to EzData's answer (its
`{"code":500,...}` body and HTTP status), ESP-AI's (`{"success":false,...}` with its code, over
HTTP 200) and devicecloud's own API's (an RFC 9457 `application/problem+json` and its status).

`answer_for` looks an error up along its class hierarchy, as Starlette looks up exception
handlers: the nearest class in the table answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.formparsers import MultiPartException
from starlette.responses import Response

from devicecloud.core.errors import (
    Conflict,
    DeviceCloudError,
    InvalidRequest,
    NotFound,
    StorageFull,
    TooLarge,
    TooMany,
    Unauthorized,
    Unavailable,
)
from devicecloud.core.espai.devices import Unbound
from devicecloud.core.espai.values import MissingParameter
from devicecloud.web.responses import ez_error, json_response

PROBLEM_TYPES = "/problems/"  # a problem's `type` is this followed by its title in kebab case
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Answer:
    """How one kind of error is answered; in a message, `{}` stands for the error's own text."""

    status: int
    """The HTTP status of devicecloud's own API."""
    title: str
    """The problem's `title`, which also names its `type`."""
    ezdata_status: int = 200
    """The HTTP status of EzData's answer: 200 for a refusal its clients expect."""
    ezdata_message: str = "{}"
    espai_code: int = 400
    espai_message: str = "{}"

    def ezdata_text(self, error: Exception) -> str:
        return self.ezdata_message.format(error)

    def espai_text(self, error: Exception) -> str:
        return self.espai_message.format(error)

    @property
    def type(self) -> str:
        return PROBLEM_TYPES + self.title.lower().replace(" ", "-")


ANSWERS: dict[type[Exception], Answer] = {
    Exception: Answer(500, "Internal error", ezdata_status=500, ezdata_message="internal error",
                      espai_code=500, espai_message="系统错误:服务器内部错误,请稍后重试"),
    MultiPartException: Answer(400, "Malformed multipart body", ezdata_status=400,
                               ezdata_message="malformed multipart body: {}",
                               espai_message="参数格式错误:{}"),
    DeviceCloudError: Answer(400, "Refused"),
    InvalidRequest: Answer(400, "Invalid request"),
    MissingParameter: Answer(400, "Missing parameter", espai_code=401),
    Unauthorized: Answer(401, "Unauthorized", espai_code=401),
    Unbound: Answer(401, "Device not bound", espai_code=401),
    NotFound: Answer(404, "Not found", espai_code=404),
    Conflict: Answer(409, "Conflict", espai_code=409),
    TooLarge: Answer(413, "Too large", ezdata_status=413, espai_code=413,
                     espai_message="参数错误:请求体过大"),
    TooMany: Answer(429, "Too many requests", ezdata_status=429, espai_code=429),
    Unavailable: Answer(503, "Unavailable", ezdata_status=503, espai_code=503,
                        espai_message="系统错误:数据库暂时不可用,请稍后重试"),
    StorageFull: Answer(507, "Storage full", espai_code=507),
}
UNEXPECTED = ANSWERS[Exception]
"""The answer to an error no nearer class of the table answers: a failure, not a refusal."""


def answer_for(error: Exception) -> Answer:
    """The answer of the nearest class of `error` in the table."""
    return next(ANSWERS[kind] for kind in type(error).__mro__ if kind in ANSWERS)


def _retry_after(error: Exception) -> dict[str, str] | None:
    return {"Retry-After": str(error.retry_after)} if isinstance(error, TooMany) else None


def ezdata_refusal(error: Exception) -> Response:
    """EzData's answer to `error`: `{"code":500,"msg":...,"data":null}`."""
    answer = answer_for(error)
    return ez_error(answer.ezdata_text(error), answer.ezdata_status, _retry_after(error))


def problem(error: Exception, detail: str | None = None) -> Response:
    """devicecloud's own API's answer to `error`: a problem+json whose `detail` is, unless given,
    the refusal's text (a failure's stays unsaid)."""
    answer = answer_for(error)
    if detail is None:
        detail = answer.title if answer is UNEXPECTED else str(error)
    doc = {"type": answer.type, "title": answer.title, "status": answer.status, "detail": detail}
    return json_response(doc, answer.status, _retry_after(error), PROBLEM_JSON)
