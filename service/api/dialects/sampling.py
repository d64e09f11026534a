"""The server's limits on what a request may ask of sampling (the parameters themselves are
written by service/completion/plan.py)."""

import dataclasses

from service.api.errors import ApiError
from service.engine import SamplingParams
from service.semantic.stopping import LineEnd
from service.settings import Settings


def check_limits(settings: Settings, max_tokens: int, num_choices: int, field: str) -> None:
    if max_tokens > settings.max_tokens_limit:
        raise ApiError(
            400,
            f"{field} is {max_tokens}; this server allows at most {settings.max_tokens_limit}",
            field,
        )
    if num_choices > settings.max_n:
        raise ApiError(
            400, f"{num_choices} choices asked; this server allows at most {settings.max_n}", "n"
        )


def with_beams(
    params: SamplingParams, settings: Settings, num_beams: int, **knobs
) -> SamplingParams:
    """`params` as a beam search of `num_beams` beams; `knobs` are SamplingParams' other beam
    fields. Beam search is greedy: a temperature is refused rather than ignored."""
    if num_beams > settings.max_num_beams:
        raise ApiError(
            400,
            f"{num_beams} beams asked (the larger of num_beams and n); this server allows at "
            f"most {settings.max_num_beams}",
            "num_beams",
        )
    if not params.greedy:
        raise ApiError(
            400,
            "beam search is deterministic: send temperature 0, or leave it out, with num_beams",
            "temperature",
        )
    try:
        return dataclasses.replace(params, num_beams=num_beams, **knobs)
    except ValueError as error:
        raise ApiError(400, str(error), "num_beams") from None


# A --block-num-beams search ranks as a request's own num_beams does by default.
BLOCK_LENGTH_PENALTY = 0.5


def with_server_beams(params: SamplingParams, settings: Settings) -> SamplingParams:
    """A greedy code-aware request that asks for no beams as the server's beam search: one line
    with --line-num-beams, a block (several lines) with --block-num-beams; others unchanged.
    Only for requests that do not stream: beam search has nothing final before it ends."""
    if params.stop_rule is None or not params.greedy or params.beam_search:
        return params
    one_line = isinstance(params.stop_rule, LineEnd)  # stop mode "line", sent or chosen by "auto"
    num_beams = settings.line_num_beams if one_line else settings.block_num_beams
    if num_beams == 1:
        return params
    return dataclasses.replace(
        params,
        num_beams=num_beams,
        length_penalty=settings.line_length_penalty if one_line else BLOCK_LENGTH_PENALTY,
    )
