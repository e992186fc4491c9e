"""How every /api/v1 handler answers a refusal or a failure: an RFC 9457 problem+json whose
`detail` names the offending parameter, and a 422 for valid JSON of the wrong shape."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from devicecloud.core.errors import InvalidRequest
from devicecloud.web.errors import PROBLEM_JSON, PROBLEM_TYPES, UNEXPECTED, answer_for, problem
from devicecloud.web.responses import json_response

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class WrongShape(InvalidRequest):
    """Valid JSON whose content breaks the operation's model: answered 422."""


UNPROCESSABLE = "Unprocessable content"


def problem_of(error: Exception) -> Response:
    """The problem+json answering `error`."""
    if isinstance(error, WrongShape):
        doc = {"type": PROBLEM_TYPES + UNPROCESSABLE.lower().replace(" ", "-"),
               "title": UNPROCESSABLE, "status": 422, "detail": str(error)}
        return json_response(doc, 422, None, PROBLEM_JSON)
    return problem(error)


def answers(handler: Handler) -> Handler:
    """`handler`, with every error it raises answered as a problem (an unexpected one logged)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as error:
            if answer_for(error) is UNEXPECTED:
                log.exception("%s %s failed", request.method, request.url.path)
            return problem_of(error)

    return endpoint
