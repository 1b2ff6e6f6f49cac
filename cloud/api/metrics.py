"""The API's request metrics and its ``GET /metrics`` (Prometheus text format).

A pure ASGI middleware (no per-request objects beyond a clock read) counts requests by
method, route template and status, and times them; the route template, not the path,
keeps the label set bounded (``/v1/rents/{rent_id}``, not one series per rent).

``GET /metrics`` answers the Prometheus text format (what a scraper reads), so it stays out
of the OpenAPI document, whose operations all answer JSON envelopes; its refusal is the
API's one error envelope all the same (401, ``code`` of ``UNAUTHENTICATED``, with
``WWW-Authenticate: Bearer``), from ``api/errors.py``.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kickstand.cloud import metrics
from kickstand.cloud.api.errors import unauthenticated

REQUESTS = Counter(
    "kickstand_api_requests",
    "HTTP requests answered by the API",
    ["method", "route", "status"],
    registry=metrics.REGISTRY,
)
LATENCY = Histogram(
    "kickstand_api_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=metrics.REGISTRY,
)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], template, str(status)).inc()
            LATENCY.labels(template).observe(time.perf_counter() - started)


def install(app: FastAPI, token: str | None) -> None:
    """The middleware and ``GET /metrics`` (bearer ``token`` required when set)."""
    app.add_middleware(RequestMetrics)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        if token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise unauthenticated("a scrape needs the METRICS_TOKEN bearer token")
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
