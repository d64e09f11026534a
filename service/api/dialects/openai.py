"""OpenAI's legacy completions API (`prompt` body), with OpenAI's semantics.

The completion ends at EOS, a client stop string or max_tokens, unless the request opts into
code-aware stopping with our `stop_mode` field. `suffix` is accepted and rendered as a FIM prompt
for the served model's family. Any `model` name is accepted: one model is served.

Beam search (our `num_beams` and its knobs): one engine request of max(n, num_beams) beams per
prompt whose best distinct candidates are the n choices; greedy only, one prompt, not streamed.
"""

import time
import uuid

from service.api.dependencies import Caller, Serving
from service.api.dialects.sampling import (
    check_limits,
    with_beams,
    with_server_beams,
)
from service.api.errors import ApiError
from service.api.schemas import (
    BEAM_KNOBS,
    OpenAIChoice,
    OpenAICompletionRequest,
    OpenAICompletionResponse,
    Usage,
)
from service.completion.finishing import SourceFile
from service.completion.plan import sampling_params
from service.completion.runner import Completion, Delta, Job
from service.prompt.builder import CompletionInput


def jobs(body: OpenAICompletionRequest, serving: Serving, caller: Caller) -> list[Job]:
    if reason := body.unsupported():
        raise ApiError(400, reason)
    max_tokens = body.max_tokens or 16
    check_limits(serving.settings, max_tokens, len(body.prompts) * body.n, "max_tokens")
    suffix = body.suffix or ""
    if not any(p.strip() for p in body.prompts) and not suffix.strip():
        raise ApiError(400, "the prompt is empty: send some text to complete", "prompt")
    completion_id = f"cmpl-{uuid.uuid4()}"
    if body.num_beams > 1:
        return [beam_job(body, serving, caller, max_tokens, suffix, completion_id)]
    if knobs := sorted(set(BEAM_KNOBS) & body.model_fields_set):
        raise ApiError(400, f"{knobs[0]} applies to beam search: send num_beams > 1", knobs[0])
    session = caller.session()
    cache_salt = serving.cache_salt(caller.tenant)
    result = []
    # Several prompts of one request are several files: their windows are found by content.
    window_session = session if len(body.prompts) == 1 else None
    for text in body.prompts:
        prompt = serving.builder.build(
            CompletionInput(
                prefix=text, suffix=suffix, cache_salt=cache_salt, session=window_session
            ),
            max_tokens,
        )
        for j in range(body.n):
            index = len(result)
            params = sampling_params(
                prompt,
                max_tokens=max_tokens,
                temperature=1.0 if body.temperature is None else body.temperature,
                top_p=body.top_p or 1.0,
                seed=None if body.seed is None else body.seed + j,  # n different samples
                stop=body.stops,
                stop_mode=body.stop_mode,
            )
            if body.n == 1 and not body.stream:
                params = with_server_beams(params, serving.settings)
            result.append(
                Job(
                    request_id=f"{completion_id}-{index}",
                    tenant=caller.tenant,
                    cache_salt=cache_salt,
                    prompt=prompt,
                    params=params,
                    session=None if session is None else session.choice(index),
                    drop_overlap=body.stop_mode != "none",
                    semantic=serving.semantic(body.semantic),
                    unsafe_suggestions=serving.unsafe_suggestions,
                    source=SourceFile.of(text, suffix),
                )
            )
    return result


def beam_job(
    body: OpenAICompletionRequest,
    serving: Serving,
    caller: Caller,
    max_tokens: int,
    suffix: str,
    completion_id: str,
) -> Job:
    """One beam search whose n best distinct candidates are the choices."""
    if len(body.prompts) > 1:
        raise ApiError(400, "num_beams takes one prompt: send one request per prompt", "prompt")
    if body.stream:
        raise ApiError(
            400,
            "num_beams cannot stream: beam search ranks whole completions, so nothing is final "
            "before it ends; send stream false",
            "stream",
        )
    cache_salt = serving.cache_salt(caller.tenant)
    session = caller.session()
    prompt = serving.builder.build(
        CompletionInput(
            prefix=body.prompts[0], suffix=suffix, cache_salt=cache_salt, session=session
        ),
        max_tokens,
    )
    params = sampling_params(
        prompt,
        max_tokens=max_tokens,
        temperature=body.temperature or 0.0,
        top_p=1.0,
        seed=None,
        stop=body.stops,
        stop_mode=body.stop_mode,
    )
    params = with_beams(
        params,
        serving.settings,
        max(body.n, body.num_beams),
        **{knob: getattr(body, knob) for knob in BEAM_KNOBS},
    )
    return Job(
        request_id=f"{completion_id}-0",
        tenant=caller.tenant,
        cache_salt=cache_salt,
        prompt=prompt,
        params=params,
        session=caller.session(),
        drop_overlap=body.stop_mode != "none",
        num_choices=body.n,
        semantic=serving.semantic(body.semantic),
        unsafe_suggestions=serving.unsafe_suggestions,
        source=SourceFile.of(body.prompts[0], suffix),
    )


def completion_id(jobs: list[Job]) -> str:
    return jobs[0].request_id.rsplit("-", 1)[0]


def response(
    jobs: list[Job], completions: list[Completion], model: str
) -> OpenAICompletionResponse:
    prompt_tokens = sum(len(p.token_ids) for p in {id(j.prompt): j.prompt for j in jobs}.values())
    completion_tokens = sum(c.num_tokens for c in completions)
    return OpenAICompletionResponse(
        id=completion_id(jobs),
        created=int(time.time()),
        model=model,
        choices=[
            OpenAIChoice(text=c.text, index=c.index, finish_reason=c.finish_reason)
            for c in completions
        ],
        usage=Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )


def chunk(jobs: list[Job], delta: Delta, model: str, created: int) -> dict:
    return OpenAICompletionResponse(
        id=completion_id(jobs),
        created=created,
        model=model,
        choices=[
            OpenAIChoice(text=delta.text, index=delta.index, finish_reason=delta.finish_reason)
        ],
    ).model_dump(exclude_none=False, exclude={"usage"})
