"""POST /v1/completions (Tabby or OpenAI body, told apart by their fields) and its Copilot alias."""

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import StreamingResponse

from service.api.dependencies import Serving, ServingDep, SessionDep
from service.api.dialects import openai, tabby
from service.api.errors import ApiError
from service.api.schemas import (
    OpenAICompletionRequest,
    OpenAICompletionResponse,
    TabbyCompletionRequest,
    TabbyCompletionResponse,
)
from service.api.streaming import sse_response

router = APIRouter(tags=["completions"])

BODY_DOC = (
    "A Tabby body (`language`, `segments: {prefix, suffix, ...}`) or an OpenAI legacy "
    "completions body (`prompt`, `suffix`, `max_tokens`, ...); the fields tell them apart."
)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": TabbyCompletionResponse | OpenAICompletionResponse},
    400: {"description": "invalid request, with a message saying what to change"},
    413: {"description": "body over --max-body-bytes"},
    503: {"description": "the engine's queue is full; retry after Retry-After seconds"},
}


@router.post("/v1/completions", responses=RESPONSES)
async def completions(
    payload: Annotated[dict[str, Any], Body(description=BODY_DOC)],
    request: Request,
    serving: ServingDep,
    session: SessionDep,
):
    if "segments" in payload:
        return await tabby_completion(
            TabbyCompletionRequest.model_validate(payload), request, serving, session
        )
    if "prompt" in payload:
        return await openai_completion(
            OpenAICompletionRequest.model_validate(payload), request, serving, session
        )
    raise ApiError(
        400, "send `segments.prefix` (Tabby) or `prompt` (OpenAI) to get a completion", "prompt"
    )


@router.post("/v1/engines/{engine}/completions", responses=RESPONSES)
async def engine_completions(
    engine: str,
    payload: Annotated[dict[str, Any], Body(description=BODY_DOC)],
    request: Request,
    serving: ServingDep,
    session: SessionDep,
):
    """Copilot-style alias (e.g. /v1/engines/codegen/completions); the engine name is ignored."""
    return await completions(payload, request, serving, session)


async def tabby_completion(
    body: TabbyCompletionRequest, request: Request, serving: Serving, session: str | None
) -> TabbyCompletionResponse:
    job = tabby.job(body, serving, session)
    (completion,) = await serving.runner.complete(
        request, [job], serving.settings.request_timeout_s
    )
    return tabby.response(body, job, completion, serving)


async def openai_completion(
    body: OpenAICompletionRequest, request: Request, serving: Serving, session: str | None
) -> OpenAICompletionResponse | StreamingResponse:
    jobs = openai.jobs(body, serving, session)
    timeout = serving.settings.request_timeout_s
    if not body.stream:
        completions = await serving.runner.complete(request, jobs, timeout)
        return openai.response(jobs, completions, serving.model_id)
    streams = serving.runner.start(jobs)  # refusals (503, 400) happen before the 200 stream
    created = int(time.time())

    async def chunks():
        async for delta in serving.runner.stream(jobs, streams, timeout):
            yield openai.chunk(jobs, delta, serving.model_id, created)

    return sse_response(chunks(), done_marker=True)
