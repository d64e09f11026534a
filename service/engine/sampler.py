"""Turns a step's logits into next tokens: greedy, or temperature and top-p with a per-request seed."""

import torch

from service.engine.forced_prefix import ForcedPrefixIndex, remaining_prefix
from service.engine.sequence import Sequence


class Sampler:
    def __init__(self, forced_prefix_index: ForcedPrefixIndex):
        self.forced_prefix_index = forced_prefix_index

    def __call__(
        self, logits: torch.Tensor, seqs: list[Sequence], generated: list[str]
    ) -> list[int]:
        """logits: [len(seqs), vocab]; generated: each sequence's raw output text so far."""
        tokens = []
        for row, seq, text in zip(logits, seqs, generated, strict=True):
            remaining = remaining_prefix(seq.params.forced_prefix, text)
            if remaining:
                row = self.forced_prefix_index.mask_logits(row, remaining)
            tokens.append(self._sample_row(row, seq))
        return tokens

    @staticmethod
    def _sample_row(row: torch.Tensor, seq: Sequence) -> int:
        params = seq.params
        if params.greedy:
            return int(row.argmax())
        probs = torch.softmax(row / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Keep the smallest set of tokens whose mass reaches top_p (the first always stays).
            outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
            sorted_probs[outside] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=seq.generator))
