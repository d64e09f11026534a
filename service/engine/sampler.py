"""Turns a step's logits into next tokens: greedy, or temperature and top-p with a per-request seed."""

import torch

from service.engine.forced_prefix import ForcedPrefixIndex, remaining_prefix
from service.engine.sequence import Sequence


class Sampler:
    def __init__(self, forced_prefix_index: ForcedPrefixIndex):
        self.forced_prefix_index = forced_prefix_index

    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
        """logits: [len(seqs), vocab]; one next token per sequence."""
        argmax = logits.argmax(dim=-1).tolist()  # one call serves every plain greedy row
        tokens = []
        for row, seq, best in zip(logits, seqs, argmax, strict=True):
            remaining = remaining_prefix(seq.params.forced_prefix, seq.raw_text)
            if remaining:
                row = self.forced_prefix_index.mask_logits(row, remaining)
            elif seq.params.greedy:
                tokens.append(best)
                continue
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
