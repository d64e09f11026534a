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

The Triton version works in two stages so a 50k vocabulary is never sorted or copied:
stage 1, per (beam, vocab chunk), the chunk's max and sum of exponentials (online softmax
statistics) and its 2K best allowed logits; stage 2, per request, the per-beam normalizer from
the chunk statistics and the top-2K over all beams' chunk candidates. Within a chunk candidates
are ranked by logit, which orders them as the final score does (same beam, same normalizer).
Selection is an arg-max repeated 2K times over (score, index) packed into one int64, so a single
reduction finds the best score and, among equals, the lowest index.
"""

import torch
import triton
import triton.language as tl

from kernels.dispatch import use_triton

VOCAB_CHUNK = 4096  # vocab entries per stage-1 program
_EMPTY = tl.constexpr(-(2**63))  # packed key below every real candidate, -inf included


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


@triton.jit
def _sortable(x):
    """fp32 -> int32 whose signed order is the float order (-0.0 counted as +0.0)."""
    bits = (x + 0.0).to(tl.int32, bitcast=True)
    return tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


@triton.jit
def _unsortable(key):
    return tl.where(key >= 0, key, key ^ 0x7FFFFFFF).to(tl.float32, bitcast=True)


@triton.jit
def _chunk_kernel(
    logits_ptr,
    allowed_ptr,
    chunk_max_ptr,  # [R, num_chunks]
    chunk_sum_ptr,  # [R, num_chunks]
    cand_logit_ptr,  # [R, num_chunks * NUM_CAND]
    cand_token_ptr,  # [R, num_chunks * NUM_CAND], -1 where the chunk ran out of tokens
    vocab_size,
    num_chunks,
    stride_logits,
    stride_allowed,
    HAS_MASK: tl.constexpr,
    CHUNK: tl.constexpr,
    NUM_CAND: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    local = tl.arange(0, CHUNK)
    token = chunk * CHUNK + local
    in_vocab = token < vocab_size
    x = tl.load(logits_ptr + row * stride_logits + token, mask=in_vocab, other=float("-inf"))
    x = x.to(tl.float32)

    # The normalizer covers the whole vocabulary: masking happens after the log-softmax.
    m = tl.max(x, 0)
    m_shift = tl.where(m == float("-inf"), 0.0, m)  # all -inf chunk: sum 0, not NaN
    out = row * num_chunks + chunk
    tl.store(chunk_max_ptr + out, m)
    tl.store(chunk_sum_ptr + out, tl.sum(tl.exp(x - m_shift), 0))

    if HAS_MASK:
        word = tl.load(allowed_ptr + row * stride_allowed + token // 32, mask=in_vocab, other=0)
        x = tl.where(((word >> (token % 32)) & 1) != 0, x, float("-inf"))
    # (logit, lower token first) packed so one max finds both.
    packed = (_sortable(x).to(tl.int64) << 32) | (CHUNK - 1 - local).to(tl.int64)
    packed = tl.where(in_vocab, packed, _EMPTY)
    cand = out * NUM_CAND
    for i in range(NUM_CAND):
        best = tl.max(packed, 0)
        valid = best != _EMPTY
        best_logit = _unsortable((best >> 32).to(tl.int32))
        tl.store(cand_logit_ptr + cand + i, tl.where(valid, best_logit, float("-inf")))
        picked = chunk * CHUNK + CHUNK - 1 - best.to(tl.int32)
        tl.store(cand_token_ptr + cand + i, tl.where(valid, picked, -1))
        packed = tl.where(packed == best, _EMPTY, packed)


@triton.jit
def _merge_kernel(
    parent_ptr,  # [B, NUM_CAND] int64
    token_ptr,  # [B, NUM_CAND] int64
    score_ptr,  # [B, NUM_CAND] fp32
    beam_scores_ptr,
    chunk_max_ptr,
    chunk_sum_ptr,
    cand_logit_ptr,
    cand_token_ptr,
    vocab_size,
    num_chunks,
    NUM_BEAMS: tl.constexpr,
    NUM_CAND: tl.constexpr,
    BEAMS_PAD: tl.constexpr,
    CHUNKS_PAD: tl.constexpr,
    CANDS_PAD: tl.constexpr,
):
    request = tl.program_id(0)
    beams = tl.arange(0, BEAMS_PAD)
    beam_ok = beams < NUM_BEAMS
    rows = (request * NUM_BEAMS + beams).to(tl.int64)

    # Per-beam log-normalizer from the chunk statistics, in chunk order.
    chunks = tl.arange(0, CHUNKS_PAD)
    stat_mask = beam_ok[:, None] & (chunks[None, :] < num_chunks)
    stat = rows[:, None] * num_chunks + chunks[None, :]
    c_max = tl.load(chunk_max_ptr + stat, mask=stat_mask, other=float("-inf"))
    c_sum = tl.load(chunk_sum_ptr + stat, mask=stat_mask, other=0.0)
    m = tl.max(c_max, 1)
    m = tl.where(m == float("-inf"), 0.0, m)
    total = tl.sum(c_sum * tl.exp(c_max - m[:, None]), 1)
    lse = m + tl.log(tl.where(beam_ok, total, 1.0))  # padding beams: no log(0)
    base = tl.load(beam_scores_ptr + rows, mask=beam_ok, other=0.0) - lse

    cands = tl.arange(0, CANDS_PAD)
    per_beam = num_chunks * NUM_CAND
    cand = rows[:, None] * per_beam + cands[None, :]
    cand_mask = beam_ok[:, None] & (cands[None, :] < per_beam)
    logit = tl.load(cand_logit_ptr + cand, mask=cand_mask, other=float("-inf"))
    token = tl.load(cand_token_ptr + cand, mask=cand_mask, other=-1)
    score = logit + base[:, None]
    # Tie-break on the flat index: lower parent beam, then lower token.
    flat = beams[:, None] * vocab_size + tl.maximum(token, 0)
    packed = (_sortable(score).to(tl.int64) << 32) | (0x7FFFFFFF - flat).to(tl.int64)
    packed = tl.where(token >= 0, packed, _EMPTY)

    out = request.to(tl.int64) * NUM_CAND
    for i in range(NUM_CAND):
        best = tl.max(tl.max(packed, 1), 0)
        best_flat = 0x7FFFFFFF - best.to(tl.int32)
        tl.store(parent_ptr + out + i, (best_flat // vocab_size).to(tl.int64))
        tl.store(token_ptr + out + i, (best_flat % vocab_size).to(tl.int64))
        tl.store(score_ptr + out + i, _unsortable((best >> 32).to(tl.int32)))
        packed = tl.where(packed == best, _EMPTY, packed)


def beam_step_triton(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    allowed: torch.Tensor | None,
    num_beams: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract as `beam_step_reference`, in two Triton stages."""
    assert logits.stride(-1) == 1
    assert allowed is None or (allowed.dtype == torch.int32 and allowed.stride(-1) == 1)
    num_rows, vocab_size = logits.shape
    num_requests = num_rows // num_beams
    num_cand = 2 * num_beams
    assert num_beams * vocab_size < 2**31 and num_cand <= vocab_size
    num_chunks = triton.cdiv(vocab_size, VOCAB_CHUNK)
    device = logits.device
    chunk_max = torch.empty((num_rows, num_chunks), dtype=torch.float32, device=device)
    chunk_sum = torch.empty_like(chunk_max)
    cand_logit = torch.empty((num_rows, num_chunks * num_cand), dtype=torch.float32, device=device)
    cand_token = torch.empty((num_rows, num_chunks * num_cand), dtype=torch.int32, device=device)
    _chunk_kernel[(num_rows, num_chunks)](
        logits, logits if allowed is None else allowed,
        chunk_max, chunk_sum, cand_logit, cand_token,
        vocab_size, num_chunks, logits.stride(0), 0 if allowed is None else allowed.stride(0),
        HAS_MASK=allowed is not None, CHUNK=VOCAB_CHUNK, NUM_CAND=num_cand,
    )  # fmt: skip

    parents = torch.empty((num_requests, num_cand), dtype=torch.int64, device=device)
    tokens = torch.empty_like(parents)
    scores = torch.empty((num_requests, num_cand), dtype=torch.float32, device=device)
    _merge_kernel[(num_requests,)](
        parents, tokens, scores, beam_scores.float(),
        chunk_max, chunk_sum, cand_logit, cand_token, vocab_size, num_chunks,
        NUM_BEAMS=num_beams, NUM_CAND=num_cand,
        BEAMS_PAD=triton.next_power_of_2(num_beams),
        CHUNKS_PAD=triton.next_power_of_2(num_chunks),
        CANDS_PAD=triton.next_power_of_2(num_chunks * num_cand),
    )  # fmt: skip
    return parents, tokens, scores


def beam_step(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    allowed: torch.Tensor | None,
    num_beams: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton on CUDA, the torch reference elsewhere (`KERNELS=triton|reference` forces either)."""
    if use_triton(logits):
        return beam_step_triton(logits, beam_scores, allowed, num_beams)
    return beam_step_reference(logits, beam_scores, allowed, num_beams)
