"""POST /v1/completions (Tabby or OpenAI body, told apart by their fields) and its Copilot alias."""

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import Discriminator, Tag

from service.api.dependencies import Caller, CallerDep, Serving, ServingDep
from service.api.dialects import openai, tabby
from service.api.lifecycle import admit
from service.api.schemas import (
    OpenAICompletionRequest,
    OpenAICompletionResponse,
    TabbyCompletionRequest,
    TabbyCompletionResponse,
)
from service.api.streaming import STREAMED_200, sse_response

router = APIRouter(tags=["completions"], dependencies=[Depends(admit)])

BODY_DOC = (
    "A Tabby body (`language`, `segments: {prefix, suffix, ...}`) or an OpenAI legacy "
    "completions body (`prompt`, `suffix`, `max_tokens`, ...); the fields tell them apart."
)


def dialect(payload: Any) -> str | None:
    """Which body it is, by its fields: Tabby's `segments` first, then OpenAI's `prompt`. A body
    that is not an object goes to the OpenAI model, whose error says it must be one."""
    if not isinstance(payload, dict):
        return "openai"
    if "segments" in payload:
        return "tabby"
    return "openai" if "prompt" in payload else None


# Both bodies in the OpenAPI schema; the tag is left out of error messages (api/errors.py).
CompletionBody = Annotated[
    Annotated[TabbyCompletionRequest, Tag("tabby")]
    | Annotated[OpenAICompletionRequest, Tag("openai")],
    Discriminator(
        dialect,
        custom_error_type="no_dialect",
        custom_error_message=(
            "send `segments.prefix` (Tabby) or `prompt` (OpenAI) to get a completion"
        ),
    ),
    Body(description=BODY_DOC),
]

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": TabbyCompletionResponse | OpenAICompletionResponse, **STREAMED_200},
    400: {"description": "invalid request, with a message saying what to change"},
    413: {"description": "body over --max-body-bytes"},
    499: {"description": "superseded by a newer request of the same editor session"},
    503: {
        "description": "the engine's queue is full, the server is shutting down or its engine "
        "failed; retry after Retry-After seconds"
    },
}


@router.post("/v1/completions", responses=RESPONSES)
async def completions(
    body: CompletionBody, request: Request, serving: ServingDep, caller: CallerDep
):
    if isinstance(body, TabbyCompletionRequest):
        return await tabby_completion(body, request, serving, caller)
    return await openai_completion(body, request, serving, caller)


@router.post("/v1/engines/{engine}/completions", responses=RESPONSES)
async def engine_completions(
    engine: str,
    body: CompletionBody,
    request: Request,
    serving: ServingDep,
    caller: CallerDep,
):
    """Copilot-style alias (e.g. /v1/engines/codegen/completions); the engine name is ignored."""
    return await completions(body, request, serving, caller)


async def tabby_completion(
    body: TabbyCompletionRequest, request: Request, serving: Serving, caller: Caller
) -> TabbyCompletionResponse:
    job = tabby.job(body, serving, caller)
    (completion,), request.state.cache = await serving.runner.complete(
        [job], serving.settings.request_timeout_s, caller.disconnected, caller.sensitive_file
    )
    return tabby.response(body, job, completion, serving)


async def openai_completion(
    body: OpenAICompletionRequest, request: Request, serving: Serving, caller: Caller
) -> OpenAICompletionResponse | StreamingResponse:
    jobs = openai.jobs(body, serving, caller)
    timeout = serving.settings.request_timeout_s
    if not body.stream:
        completions, request.state.cache = await serving.runner.complete(
            jobs, timeout, caller.disconnected, caller.sensitive_file
        )
        return openai.response(jobs, completions, serving.model_id)
    streams = serving.runner.start(jobs)  # refusals (503, 400) happen before the 200 stream
    created = int(time.time())

    async def chunks():
        async for delta in serving.runner.stream(jobs, streams, timeout):
            yield openai.chunk(jobs, delta, serving.model_id, created)

    return sse_response(chunks(), done_marker=True)
