"""Turns a step's logits into next tokens: greedy, or temperature and top-p with a per-request seed."""

import torch

from service.engine.next_tokens import NextTokens
from service.engine.sequence import Sequence


class Sampler:
    def __init__(self, next_tokens: NextTokens):
        self.next_tokens = next_tokens

    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
        """logits: [len(seqs), vocab]; one next token per sequence."""
        argmax = logits.argmax(dim=-1).tolist()  # one call serves every plain greedy row
        tokens = []
        for row, seq, best in zip(logits, seqs, argmax, strict=True):
            allowed = self.next_tokens.allowed(seq, row.numel())
            if allowed is not None:
                row = row.masked_fill(~allowed, float("-inf"))
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
            outside[0] = False  # also where top_p rounds to 0 in float32 (1e-300 did)
            sorted_probs[outside] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=seq.generator))
