"""GET /metrics (Prometheus), and the HTTP request latency histogram, buckets from 1 ms.

The engine's own metrics (time to first token, queue time, step times, batch size, tokens,
prefix-cache hits, KV blocks, cancellations) live in service/engine/metrics.py, in the same
default registry.
"""

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.engine.metrics import LATENCY_BUCKETS

router = APIRouter(tags=["metrics"])

HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Request received to response finished",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class HttpLatency:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would break disconnect detection)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            # The route template, not the raw path: unmatched paths must not grow the label set.
            name = getattr(route, "path", "unmatched")
            HTTP_LATENCY.labels(scope["method"], name, str(status)).observe(
                time.perf_counter() - start
            )
