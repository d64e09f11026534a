"""Beam step in Triton: the kernel behind `completion_kernels.beam_step` on CUDA.

It works in two stages so a 50k vocabulary is never sorted or copied:
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

VOCAB_CHUNK = 4096  # vocab entries per stage-1 program
_EMPTY = tl.constexpr(-(2**63))  # packed key below every real candidate, -inf included


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
