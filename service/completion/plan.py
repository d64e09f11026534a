"""A request's sampling parameters for its prompt: the one writer that the API's dialects,
evaluation (training/) and benchmarks share, so what is evaluated is what is served."""

import dataclasses
from collections.abc import Sequence

from service.engine import SamplingParams  # part of this API: evaluation builds its own here
from service.prompt.builder import Prompt
from service.prompt.newlines import to_lf
from service.semantic.stopping import BlockEnd, StopMode, make_stop_rule, on_blank_line


def sampling_params(
    prompt: Prompt,
    *,
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    stop_mode: StopMode = "none",
    min_indent: int = 0,
) -> SamplingParams:
    """Sampling as asked, stopped by `stop_mode`'s code-aware rule, fitted to the prompt. A
    `min_indent` above 0 (llama.cpp's n_indent) stops instead at the first line indented less."""
    stop_rule = (
        BlockEnd(min_indent)
        if min_indent
        else make_stop_rule(stop_mode, prompt.prefix, prompt.suffix)
    )
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=[to_lf(s) for s in stop],
        stop_rule=stop_rule,
    )
    return fit_to_prompt(params, prompt, code_aware=stop_mode != "none")


def fit_to_prompt(
    params: SamplingParams, prompt: Prompt, code_aware: bool = True
) -> SamplingParams:
    """`params` constrained by the prompt: the characters token healing removed come first, and
    (code-aware) a blank cursor line gets code, not an early stop."""
    return dataclasses.replace(
        params,
        forced_prefix=prompt.forced_prefix,
        code_on_first_line=code_aware and on_blank_line(prompt.prefix, prompt.suffix),
    )
