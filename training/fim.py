"""Fill-in-the-middle at training time (Bavarian et al. 2022; StarCoder's PSM and SPM).

Applied to a training chunk after it was cut from the token stream: each document piece of the
chunk is, with probability `rate`, decoded to text, split at two character positions (random, or a
tree-sitter span from `training.spans`), re-tokenized and assembled with the sentinels:

    PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM: <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle   (StarCoder's SPM variant)

Splitting characters rather than tokens lets the hole start inside a token, as a cursor does.
"""

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from training.spans import SPAN_KINDS, choose_span


@dataclass(frozen=True)
class FimConfig:
    rate: float = 0.5  # fraction of document pieces turned into FIM examples
    spm_rate: float = 0.5  # of those, the fraction in SPM order
    structured_rate: float = 0.0  # of those, the fraction whose hole is a tree-sitter span
    span_kinds: tuple[str, ...] = SPAN_KINDS
    # fraction of document pieces turned into error-correction examples (training/corruption.py)
    # instead of going to FIM; FIM's rate applies to the rest
    error_correction_rate: float = 0.0


@dataclass(frozen=True)
class Sentinels:
    prefix: int
    middle: int
    suffix: int
    pad: int
    eot: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> "Sentinels":
        names = dict(
            prefix="<fim_prefix>",
            middle="<fim_middle>",
            suffix="<fim_suffix>",
            pad="<fim_pad>",
            eot="<|endoftext|>",
        )
        ids = {field: tokenizer.token_to_id(token) for field, token in names.items()}
        missing = [names[field] for field, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks the FIM tokens {missing}")
        return cls(**ids)


class FimTransform:
    def __init__(self, tokenizer: Tokenizer, config: FimConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.sentinels = Sentinels.from_tokenizer(tokenizer)

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Transform every document piece of a chunk; the result is a little longer than tokens."""
        eot = self.sentinels.eot
        pieces = np.split(tokens, np.flatnonzero(tokens == eot) + 1)
        out: list[int] = []
        for piece in pieces:
            ends_with_eot = len(piece) > 0 and piece[-1] == eot
            body = piece[:-1] if ends_with_eot else piece
            if len(body) > 0 and rng.random() < self.config.rate:
                out.extend(self.permute(body.tolist(), rng))
            else:
                out.extend(body.tolist())
            if ends_with_eot:
                out.append(eot)
        return np.asarray(out, dtype=np.int64)

    def split_points(self, text: str, rng: np.random.Generator) -> tuple[int, int]:
        if rng.random() < self.config.structured_rate:
            span = choose_span(text, rng, self.config.span_kinds)
            if span is not None:
                return span
        lo, hi = sorted(rng.integers(0, len(text) + 1, size=2).tolist())
        return lo, hi

    def permute(self, ids: list[int], rng: np.random.Generator) -> list[int]:
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        lo, hi = self.split_points(text, rng)
        prefix, middle, suffix = (self.encode(s) for s in (text[:lo], text[lo:hi], text[hi:]))
        s = self.sentinels
        if rng.random() < self.config.spm_rate:
            return [s.prefix, s.suffix, *suffix, s.middle, *prefix, *middle]
        return [s.prefix, *prefix, s.suffix, *suffix, s.middle, *middle]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids if text else []
