"""POST /v1/events: the editor reports what happened to a completion (view, select, dismiss)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from prometheus_client import Counter

from service.api.schemas import LogEventRequest

router = APIRouter(tags=["events"])

COMPLETION_EVENTS = Counter(
    "completion_events_total", "Completions viewed, selected or dismissed", ["type", "select_kind"]
)


# Tabby's agent wants a bare 200; the schema says so (no JSON body), as response_class does.
@router.post(
    "/v1/events",
    status_code=200,
    response_class=Response,
    responses={200: {"description": "recorded (no body)"}},
)
async def log_event(
    event: LogEventRequest,
    select_kind: Annotated[Literal["line"] | None, Query()] = None,
) -> Response:
    kind = select_kind or event.select_kind or ""
    COMPLETION_EVENTS.labels(event.type, kind).inc()
    return Response(status_code=200)
