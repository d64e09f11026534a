"""llama.cpp's `/infill` API, as editor plugins such as llama.vim call it.

Differences from llama.cpp, by choice: `temperature` defaults to 0 (greedy: a completion should
not change between two identical keystrokes), `n_predict` -1 means 64 tokens, `input_extra`
files go into the prompt as comment lines, and code-aware stopping is on ("auto").
`cache_prompt` is accepted and always true in effect: the engine reuses any cached prefix.
"""

import uuid

from service.api.dependencies import Caller, Serving
from service.api.dialects.sampling import check_limits, with_server_beams
from service.api.errors import ApiError
from service.api.schemas import InfillRequest, InfillResponse, InfillTimings
from service.completion.finishing import SourceFile
from service.completion.plan import sampling_params
from service.completion.runner import Completion, Delta, Job
from service.prompt.builder import CompletionInput
from service.prompt.window import Snippet

DEFAULT_N_PREDICT = 64


def job(body: InfillRequest, serving: Serving, caller: Caller) -> Job:
    max_tokens = DEFAULT_N_PREDICT if body.n_predict == -1 else body.n_predict
    if max_tokens == 0:
        raise ApiError(400, "n_predict is 0: ask for at least one token", "n_predict")
    check_limits(serving.settings, max_tokens, 1, "n_predict")
    prefix = body.input_prefix + body.prompt
    if not prefix.strip() and not body.input_suffix.strip():
        raise ApiError(400, "input_prefix and input_suffix are empty: nothing to complete")
    cache_salt = serving.cache_salt(caller.tenant)
    session = caller.session()
    prompt = serving.builder.build(
        CompletionInput(
            prefix=prefix,
            suffix=body.input_suffix,
            snippets=tuple(Snippet(e.filename, e.text) for e in body.input_extra),
            cache_salt=cache_salt,
            session=session,
        ),
        max_tokens,
    )
    params = sampling_params(
        prompt,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=None if body.seed in (None, -1) else body.seed,
        stop=body.stop,
        stop_mode=body.stop_mode,
        min_indent=body.n_indent,  # llama.cpp: stop at the first line indented less than this
    )
    if not body.stream:
        params = with_server_beams(params, serving.settings)
    return Job(
        request_id=f"infill-{uuid.uuid4()}",
        tenant=caller.tenant,
        cache_salt=cache_salt,
        prompt=prompt,
        params=params,
        session=session,
        drop_overlap=body.stop_mode != "none",
        semantic=serving.semantic(body.semantic),
        unsafe_suggestions=serving.unsafe_suggestions,
        source=SourceFile.of(prefix, body.input_suffix),
    )


def timeout_s(body: InfillRequest, serving: Serving) -> float:
    limit = serving.settings.request_timeout_s
    return min(limit, body.t_max_predict_ms / 1000) if body.t_max_predict_ms else limit


def client_deadline(body: InfillRequest, serving: Serving) -> bool:
    """The request's own t_max_predict_ms, not the server's limit, sets its deadline."""
    limit = serving.settings.request_timeout_s
    return bool(body.t_max_predict_ms) and body.t_max_predict_ms / 1000 < limit


def out_of_time(job: Job, timeout_s: float) -> Completion:
    """The client's t_max_predict_ms ran out before a first token: llama.cpp answers with what
    it has, nothing, stopped at the limit (a 503 "server busy" would blame the server)."""
    return Completion(
        index=0,
        text="",
        finish_reason="length",
        num_prompt_tokens=len(job.prompt.token_ids),
        num_cached_tokens=0,
        num_tokens=0,
        last_token_id=None,
        first_output_s=timeout_s,
        elapsed_s=timeout_s,
    )


def stop_type(completion: Completion, serving: Serving) -> str:
    if completion.finish_reason == "length":
        return "limit"
    if completion.last_token_id in serving.special_token_ids:
        return "eos"
    return "word"  # a stop string or the code-aware stop rule


def response(completion: Completion, serving: Serving) -> InfillResponse:
    return InfillResponse(
        content=completion.text,
        stop_type=stop_type(completion, serving),
        model=serving.model_id,
        tokens_cached=completion.num_cached_tokens,
        tokens_evaluated=completion.num_prompt_tokens,
        tokens_predicted=completion.num_tokens,
        timings=InfillTimings(
            prompt_n=completion.num_prompt_tokens - completion.num_cached_tokens,
            prompt_ms=completion.first_output_s * 1000,
            predicted_n=completion.num_tokens,
            predicted_ms=(completion.elapsed_s - completion.first_output_s) * 1000,
        ),
    )


def chunk(delta: Delta) -> dict:
    finished = delta.finish_reason is not None
    return {"content": delta.text, "stop": finished}
