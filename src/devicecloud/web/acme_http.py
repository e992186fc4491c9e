"""`GET /.well-known/acme-challenge/{token}`: the key authorization of a pending HTTP-01
challenge, read from the data directory (acme.py writes it there), so that whichever process the
CA reaches answers it. A token that is not base64url is refused before any file is looked at."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from devicecloud.acme import challenge_path
from devicecloud.web.services import services

_UNKNOWN = PlainTextResponse("no such ACME challenge\n", 404)


async def challenge(request: Request) -> Response:
    path = challenge_path(services(request).settings.tls_dir, request.path_params["token"])
    if path is None:
        return _UNKNOWN
    try:
        answer = path.read_bytes()  # a few dozen bytes, written whole (renamed into place)
    except OSError:
        return _UNKNOWN
    return Response(answer, media_type="application/octet-stream")


def routes() -> list[Route]:
    return [Route("/.well-known/acme-challenge/{token}", challenge, methods=["GET"])]
