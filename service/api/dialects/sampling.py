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


def with_line_beams(params: SamplingParams, settings: Settings) -> SamplingParams:
    """A greedy one-line completion as the server's --line-num-beams search; others unchanged.
    Only for requests that do not stream: beam search has nothing final before it ends."""
    one_line = isinstance(params.stop_rule, LineEnd)  # stop mode "line", sent or chosen by "auto"
    if settings.line_num_beams == 1 or not one_line or not params.greedy or params.beam_search:
        return params
    return dataclasses.replace(
        params,
        num_beams=settings.line_num_beams,
        length_penalty=settings.line_length_penalty,
    )
