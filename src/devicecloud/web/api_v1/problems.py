"""How every /api/v1 handler answers a refusal or a failure: an RFC 9457 problem+json whose
`detail` names the offending parameter, and a 422 for valid JSON of the wrong shape."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

from starlette.exceptions import HTTPException
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


def _problem(status: int, title: str, detail: str,
             headers: Mapping[str, str] | None = None) -> Response:
    doc = {"type": PROBLEM_TYPES + title.lower().replace(" ", "-"), "title": title,
           "status": status, "detail": detail}
    return json_response(doc, status, headers, PROBLEM_JSON)


def problem_of(error: Exception) -> Response:
    """The problem+json answering `error`."""
    if isinstance(error, WrongShape):
        return _problem(422, UNPROCESSABLE, str(error))
    return problem(error)


def router_problem(request: Request, error: Exception) -> Response:
    """The answer under /api/v1 to what no handler answered: an unknown path or method (the
    router's HTTPException, a 405 with its `Allow`), or a failure."""
    if isinstance(error, HTTPException):
        title = HTTPStatus(error.status_code).phrase
        return _problem(error.status_code, title, f"{request.method} {request.url.path}: "
                        f"{error.detail}", error.headers)
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
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
