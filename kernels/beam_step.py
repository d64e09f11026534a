"""One step of (constrained) beam search: next-token log-probs, scores and top-2K candidates.

For B requests of K beams: logits [B*K, V], each beam's cumulative log-prob [B*K] and an optional
allowed-token bitmask [B*K, ceil(V/32)] int32 (token t is allowed when bit t % 32 of word t // 32
is set; the semantic engine's constraint). The step returns, per request, the 2K best
continuations (parent beam within the request, token, cumulative score), best first. 2K rather
than K so the caller still has K live beams after some candidates end in EOS (as `transformers`).

Decision: the log-softmax is NOT renormalized over the allowed tokens. A candidate's score is
`beam_score + log p_model(token)` with disallowed tokens at -inf. The score stays the model's
log-probability of the sequence, so beams the constraint pushes into text the model finds unlikely
are ranked down instead of being handed free probability mass (with one allowed token a
renormalized step would cost 0), length normalization keeps its meaning, and the result equals
`transformers` beam search with `prefix_allowed_tokens_fn`, which masks after the log-softmax.

Ties are broken by the flat index `parent * V + token`: lower parent beam first, then lower token.
When fewer than 2K tokens are allowed over the whole request, the remaining candidates carry
score -inf (the caller drops them). Length normalization (`score / length ** alpha`) applies only
to hypotheses that finish and is the caller's job, as are diversity groups: the engine calls the
step per group with penalized log-probs as logits (service/engine/beam_search.py `penalized`).

The Triton kernel that must equal `beam_step_reference` is in `triton_beam_step.py`.
"""

import torch
from completion_kernels.dispatch import use_triton


def unpack_allowed(allowed: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bitmask words [R, ceil(V/32)] int32 -> bool [R, V]."""
    bits = torch.arange(32, device=allowed.device, dtype=torch.int32)
    unpacked = (allowed[:, :, None] >> bits) & 1
    return unpacked.flatten(1)[:, :vocab_size].bool()


def pack_allowed(allowed: torch.Tensor) -> torch.Tensor:
    """bool [R, V] -> bitmask words [R, ceil(V/32)] int32 (the inverse of `unpack_allowed`)."""
    rows, vocab_size = allowed.shape
    padded = torch.zeros(rows, -(-vocab_size // 32) * 32, dtype=torch.int64, device=allowed.device)
    padded[:, :vocab_size] = allowed.long()
    words = (padded.view(rows, -1, 32) << torch.arange(32, device=allowed.device)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def _top_lowest_index_first(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row, ties (at the cut and inside) going to the lower index."""
    kth = scores.topk(k, dim=1).values[:, -1:]
    above = scores > kth
    ties = scores == kth
    tie_rank = ties.int().cumsum(1)
    keep = above | (ties & (tie_rank <= k - above.sum(1, keepdim=True)))
    index = keep.nonzero()[:, 1].view(scores.shape[0], k)  # ascending index per row
    kept = scores.gather(1, index)
    order = kept.sort(dim=1, descending=True, stable=True).indices
    return kept.gather(1, order), index.gather(1, order)


def beam_step_reference(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    allowed: torch.Tensor | None,
    num_beams: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-2K candidates per request as (parent beam [B, 2K], token [B, 2K], score [B, 2K])."""
    num_rows, vocab_size = logits.shape
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    if allowed is not None:
        logprobs = logprobs.masked_fill(~unpack_allowed(allowed, vocab_size), float("-inf"))
    scores = (logprobs + beam_scores.float()[:, None]).view(num_rows // num_beams, -1)
    top_scores, flat = _top_lowest_index_first(scores, 2 * num_beams)
    return flat // vocab_size, flat % vocab_size, top_scores


def beam_step(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    allowed: torch.Tensor | None,
    num_beams: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton on CUDA, the torch reference elsewhere (`KERNELS=triton|reference` forces either)."""
    if use_triton(logits):
        from completion_kernels.triton_beam_step import beam_step_triton

        return beam_step_triton(logits, beam_scores, allowed, num_beams)
    return beam_step_reference(logits, beam_scores, allowed, num_beams)
