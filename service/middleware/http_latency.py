"""The latency of every HTTP request, received to response finished, by method, route template
and status, observed into the histogram it is given (service/api/metrics.py defines it)."""

import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpLatency:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would break disconnect detection)."""

    def __init__(self, app: ASGIApp, histogram: Histogram):
        self.app = app
        self.histogram = histogram

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
            self.histogram.labels(scope["method"], name, str(status)).observe(
                time.perf_counter() - start
            )
