"""GET /metrics (Prometheus), and the HTTP request latency histogram, buckets from 1 ms, that
service/middleware/http_latency.py observes.

The engine's own metrics (time to first token, queue time, step times, batch size, tokens,
prefix-cache hits, KV blocks, cancellations) live in service/engine/metrics.py, in the same
default registry.
"""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

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
