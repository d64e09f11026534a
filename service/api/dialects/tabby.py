"""Tabby's completion API (`segments` body), with Tabby's defaults.

Defaults: the prefix is clipped to its last 1536 characters (whole lines), 64 new tokens,
code-aware stopping ("auto"). Temperature: Tabby's agent sends none and Tabby's server samples
at 0.1; we decode greedily at or below 0.1, which is nearly the same distribution's mode and
makes a keystroke's suggestion deterministic (and so cacheable and reusable across requests).
Our `num_beams` extension makes the choice the best of a beam search (greedy temperatures only),
scored with `length_penalty` (ours too; 0.5 unless sent). A server started with
`--line-num-beams` does so for every greedy one-line request, and `--block-num-beams` for every
greedy block, since Tabby's own clients send neither field.
"""

import uuid

from service.api.dependencies import Caller, Serving
from service.api.dialects.sampling import (
    check_limits,
    with_beams,
    with_server_beams,
)
from service.api.errors import ApiError
from service.api.schemas import (
    TabbyChoice,
    TabbyCompletionRequest,
    TabbyCompletionResponse,
    TabbyDebugData,
)
from service.completion.finishing import SourceFile
from service.completion.plan import sampling_params
from service.completion.runner import Completion, Job
from service.completion.sessions import EditorSession
from service.prompt.builder import CompletionInput, Prompt
from service.prompt.window import Snippet, imports_before

MAX_TOKENS = 64
GREEDY_AT_OR_BELOW = 0.1


def snippets(body: TabbyCompletionRequest) -> tuple[Snippet, ...]:
    segments = body.segments
    options = body.debug_options
    if options and options.disable_retrieval_augmented_code_completion:
        return ()
    declarations = [Snippet(d.filepath, d.body) for d in segments.declarations or []]
    relevant = sorted(
        [
            *(segments.relevant_snippets_from_changed_files or []),
            *(segments.relevant_snippets_from_recently_opened_files or []),
        ],
        key=lambda s: -(s.score or 0.0),
    )
    return (*declarations, *(Snippet(s.filepath, s.body) for s in relevant))


def build_prompt(
    body: TabbyCompletionRequest,
    serving: Serving,
    max_tokens: int,
    cache_salt: str | None,
    session: EditorSession | None = None,
) -> Prompt:
    if body.debug_options and body.debug_options.raw_prompt:
        return serving.builder.build_raw(body.debug_options.raw_prompt)
    segments = body.segments
    if not segments.prefix.strip() and not (segments.suffix or "").strip():
        raise ApiError(400, "segments.prefix is empty: there is no code to complete", "segments")
    max_chars = serving.settings.tabby_prefix_chars
    # Sticky: a clip that moved with each line typed would change the prompt's first block.
    prefix = serving.builder.windows.clip_prefix_chars(
        segments.prefix, max_chars, session, cache_salt
    )
    if serving.settings.tabby_prefix_imports and len(prefix) < len(segments.prefix):
        dropped = len(segments.prefix) - len(prefix)
        if imports := imports_before(segments.prefix, dropped, max_chars // 4):
            prefix = imports + "\n" + prefix  # a blank line, as between imports and code
    request = CompletionInput(
        prefix=prefix,
        suffix=segments.suffix or "",
        language=body.language,
        snippets=snippets(body),
        cache_salt=cache_salt,
        session=session,
    )
    return serving.builder.build(request, max_tokens)


def job(body: TabbyCompletionRequest, serving: Serving, caller: Caller) -> Job:
    check_limits(serving.settings, MAX_TOKENS, 1, "max_tokens")
    cache_salt = serving.cache_salt(caller.tenant)
    session = caller.session(body.user)
    prompt = build_prompt(body, serving, MAX_TOKENS, cache_salt, session)
    temperature = body.temperature or 0.0
    params = sampling_params(
        prompt,
        max_tokens=MAX_TOKENS,
        temperature=0.0 if temperature <= GREEDY_AT_OR_BELOW else temperature,
        top_p=1.0,
        seed=body.seed,
        stop=[],
        stop_mode=body.stop_mode,
    )
    if body.num_beams == 1 and "length_penalty" in body.model_fields_set:
        raise ApiError(
            400, "length_penalty applies to beam search: send num_beams > 1", "length_penalty"
        )
    if body.num_beams > 1:
        params = with_beams(
            params, serving.settings, body.num_beams, length_penalty=body.length_penalty
        )
    params = with_server_beams(params, serving.settings)
    return Job(
        request_id=f"cmpl-{uuid.uuid4()}",
        tenant=caller.tenant,
        cache_salt=cache_salt,
        prompt=prompt,
        params=params,
        session=session,
        drop_overlap=body.stop_mode != "none",
        filepath=body.segments.filepath or "",
        semantic=serving.semantic(body.semantic),
        unsafe_suggestions=serving.unsafe_suggestions,
        source=SourceFile.of(body.segments.prefix, body.segments.suffix or ""),
    )


def response(
    body: TabbyCompletionRequest, job: Job, completion: Completion, serving: Serving
) -> TabbyCompletionResponse:
    debug = None
    if body.debug_options and body.debug_options.return_prompt:
        prompt_text = serving.engine.tokenizer.decode(
            job.prompt.token_ids, skip_special_tokens=False
        )
        debug = TabbyDebugData(prompt=prompt_text)
    return TabbyCompletionResponse(
        id=job.request_id,
        choices=[TabbyChoice(index=0, text=completion.text)],
        debug_data=debug,
    )
