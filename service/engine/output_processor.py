"""After each sampled token: detokenize, strip the forced prefix, apply stop tokens, stop strings,
the code-aware stop rule and the length limit."""

from dataclasses import dataclass, field

from tokenizers import Tokenizer

from service.engine.sequence import Sequence


@dataclass
class Candidate:
    """One finished beam-search hypothesis."""

    text: str
    token_ids: list[int]
    score: float  # sum of log-probs / num_generated_tokens ** length_penalty
    finish_reason: str


@dataclass
class RequestOutput:
    request_id: str
    text: str  # safe to show: a possible start of a stop string is held back until it resolves
    token_ids: list[int]
    finished: bool
    finish_reason: str | None
    num_prompt_tokens: int
    num_cached_tokens: int
    candidates: list[Candidate] = field(default_factory=list)  # beam search: distinct, best first
    # Why an "abort" ended the request (service/engine/async_engine.py names the causes).
    abort_cause: str | None = None


class OutputProcessor:
    def __init__(self, tokenizer: Tokenizer, stop_token_ids: set[int], max_positions: int):
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids
        self.max_positions = max_positions

    def raw_text(self, seq: Sequence) -> str:
        return self.tokenizer.decode(seq.output_token_ids, skip_special_tokens=True)

    def append(self, seq: Sequence, token_id: int) -> str | None:
        """Add the token; return the finish reason if the sequence is now done."""
        seq.token_ids.append(token_id)
        params = seq.params
        text = seq.raw_text = self.raw_text(seq)
        forced = params.forced_prefix
        if text.startswith(forced):
            text = text[len(forced) :]
        elif len(text) < len(forced):
            text = ""  # still spelling the forced prefix
        if token_id in self.stop_token_ids and not params.ignore_eos:
            seq.text = text
            return "stop"
        cut = first_stop(text, params.stop)
        if cut is None and params.stop_rule is not None:
            cut = params.stop_rule.cut(text)
        seq.text = text if cut is None else text[:cut]
        if cut is not None:
            return "stop"
        if seq.num_output_tokens >= params.max_tokens or len(seq) >= self.max_positions:
            return "length"
        return None

    @staticmethod
    def to_output(seq: Sequence) -> RequestOutput:
        return RequestOutput(
            request_id=seq.request_id,
            text=seq.text if seq.is_finished else visible_text(seq),
            token_ids=seq.output_token_ids,
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_cached_tokens=seq.num_cached_tokens,
            candidates=[
                Candidate(c.text, c.output_token_ids, c.score, c.finish_reason)
                for c in seq.candidates
            ],
        )


def first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def visible_text(seq: Sequence) -> str:
    """What may be streamed before the sequence ends: nothing that a stop could still cut away."""
    text = seq.text
    if seq.params.stop_rule is not None:
        text = text[: text.rfind("\n") + 1]  # the rule decides at line ends
    hold = max((partial_match(text, s) for s in seq.params.stop), default=0)
    text = text[: len(text) - hold]
    return text.rstrip("\ufffd")  # a byte-level token may end inside a UTF-8 character


def partial_match(text: str, stop: str) -> int:
    """Length of the longest end of `text` that begins `stop`."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
