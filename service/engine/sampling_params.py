"""What a request asks of decoding."""

from dataclasses import dataclass, field
from typing import Literal, Protocol


class StopRule(Protocol):
    """Where generated text must end, decided on the text so far (forced prefix removed).

    A rule is data, a frozen dataclass whose fields are all it depends on: requests are cached
    by it (service/completion/runner.py), so two rules that cut differently must differ in
    value. The code-aware rules are built in service/semantic/stopping.py; the engine only cuts.
    """

    def cut(self, text: str) -> int | None:
        """The index to cut `text` at once it must stop, else None."""
        ...


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
    # At a cursor on a blank line: the first line of the output must carry code, not end blank.
    code_on_first_line: bool = False
    stop_rule: StopRule | None = None
    # Beam search (service/engine/beam_search.py), with `transformers`' meaning of each knob:
    # finished beams score sum_logprobs / num_generated_tokens ** length_penalty.
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | Literal["never"] = False
    # The output's first identifier is one of these names (the rest of each member legal after
    # `expr.`, past what the user typed), on every decoding path (service/engine/next_tokens.py);
    # None: no constraint. Data, so a request's constraint is compared and hashed as a value.
    allowed_continuations: frozenset[str] | None = None
    # Brackets open at the cursor (the semantic analysis's count): beam search drops a beam that
    # closes one more, or closes the wrong kind (service/engine/beam_pruning.py); None: no
    # pruning (the cursor in a string, or semantics off).
    open_brackets: int | None = None
    # Diverse beam search: num_beams split into groups searched in turn, each group's log-probs
    # lowered by diversity_penalty per earlier group's choice of the same token at that step.
    num_beam_groups: int = 1
    diversity_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.num_beams < 1:
            raise ValueError("num_beams must be at least 1")
        if self.beam_search and not self.greedy:
            raise ValueError("beam search is deterministic: send temperature 0 with num_beams")
        if self.num_beam_groups < 1 or self.num_beams % self.num_beam_groups:
            raise ValueError(
                f"num_beam_groups must divide num_beams ({self.num_beams} beams, "
                f"{self.num_beam_groups} groups)"
            )
        if self.diversity_penalty < 0:
            raise ValueError("diversity_penalty must be >= 0")
        if self.diversity_penalty > 0 and self.num_beam_groups < 2:
            raise ValueError("diversity_penalty needs num_beam_groups of 2 or more")

    @property
    def beam_search(self) -> bool:
        return self.num_beams > 1

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5
