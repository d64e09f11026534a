"""Sampling parameters for a prompt, under the server's limits on what a request may ask."""

from service.api.errors import ApiError
from service.engine import SamplingParams
from service.prompt.builder import Prompt
from service.prompt.newlines import to_lf
from service.semantic.stopping import StopMode, make_stop_rule
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


def sampling_params(
    prompt: Prompt,
    *,
    max_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    stop: list[str],
    stop_mode: StopMode,
) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=[to_lf(s) for s in stop],
        forced_prefix=prompt.forced_prefix,
        stop_rule=make_stop_rule(stop_mode, prompt.prefix, prompt.suffix),
    )
