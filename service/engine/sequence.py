"""A sequence: one request's tokens, where it stands in the cache, and its decoding state."""

import enum
import time
from dataclasses import dataclass, field

import torch

from service.engine.sampling_params import SamplingParams


class Status(enum.Enum):
    WAITING = enum.auto()  # prompt not fully computed yet
    RUNNING = enum.auto()  # decoding
    FINISHED = enum.auto()


@dataclass
class Sequence:
    request_id: str
    token_ids: list[int]
    params: SamplingParams
    # Prefix blocks are shared only between sequences of equal salt (the tenant, when the
    # server isolates tenants): the salt starts the chain of block hashes.
    cache_salt: str | None = None
    num_prompt_tokens: int = 0
    num_computed_tokens: int = 0  # tokens whose K/V are in the cache
    num_cached_tokens: int = 0  # of those, how many came from the prefix cache
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # chained hashes of its full blocks
    draft_token_ids: list[int] = field(default_factory=list)  # this step's speculative tokens
    draft_pause: int = 0  # steps left without drafting (speculation.pace_drafts)
    draft_backoff: int = 1  # the pause after the next draft the model rejects outright
    status: Status = Status.WAITING
    finish_reason: str | None = None  # "stop", "length" or "abort"
    raw_text: str = ""  # the output tokens decoded, as the model spelled them
    text: str = ""  # generated text, forced prefix removed, stops applied
    arrival_time: float = field(default_factory=time.perf_counter)
    first_token_time: float | None = None
    generator: torch.Generator | None = None
    # Beam search: a live beam's summed log-probs, a finished one's length-normalized score; the
    # request's result carries its ranked distinct hypotheses (itself first) in `candidates`.
    score: float = 0.0
    candidates: list["Sequence"] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.num_prompt_tokens = len(self.token_ids)
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed)

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status == Status.FINISHED

    def block_tokens(self, i: int, block_size: int) -> list[int]:
        return self.token_ids[i * block_size : (i + 1) * block_size]

    def step_tokens(self, start: int, end: int) -> list[int]:
        """Tokens [start, end) of the sequence followed by this step's draft."""
        tokens = self.token_ids[start:end]
        if end <= len(self.token_ids):
            return tokens
        return tokens + self.draft_token_ids[: end - len(self.token_ids)]
