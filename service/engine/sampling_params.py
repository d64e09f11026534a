"""What a request asks of decoding."""

from collections.abc import Callable
from dataclasses import dataclass, field

# Given the text generated so far, the index to cut it at once it must stop, else None.
StopRule = Callable[[str], int | None]


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    # Token healing: the first generated tokens must spell these characters, which are then
    # removed from the returned text (the prompt was backed up by exactly them).
    forced_prefix: str = ""
    stop_rule: StopRule | None = None
    # Beam search (the kernels issue) will add num_beams/length_penalty here and a per-beam
    # allowed-token hook in the sampler; decoding is one sample per sequence until then.

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5
