"""`GET /metrics`: the process's metrics in the Prometheus text format, behind
`--metrics-token` (a Bearer token) if one is set."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devicecloud.web.services import services


async def metrics(request: Request) -> Response:
    running = services(request)
    token = running.settings.metrics_token
    if token:
        shown = request.headers.get("authorization", "")
        if not hmac.compare_digest(shown.encode(), f"Bearer {token}".encode()):
            return Response("a Bearer token is needed\n", 401,
                            {"www-authenticate": 'Bearer realm="metrics"'})
    return Response(running.hub.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
