"""Paged attention in Triton: the kernels behind `completion_kernels.paged_attention` on CUDA.

Two paths, chosen per sequence by its own query count so a sequence's result never depends on
what else shares its batch:

* Prefill (n_i > 1: prompts, chunked prefill after a cached prefix). One program owns a tile of
  query rows and one KV head. A row is a (query token, query head) pair and the rows of a tile are
  the `GROUP` query heads sharing that KV head for `BLOCK_Q` consecutive tokens, so every K/V tile
  is read once for the whole group and `tl.dot` sees at least 16 rows even for decode-sized work.
* Decode (n_i == 1): split-K ("flash decoding"). One query token cannot fill a GPU with one
  program per (sequence, KV head), so the keys are cut into fixed segments of `DECODE_SEGMENT`
  tokens, each program writes an unnormalized partial (acc, running max, sum of exponentials),
  and a merge kernel combines a sequence's segments in order. The segment size is a constant, not
  a function of the batch, which keeps greedy decoding bit-identical under any batch mix.

Both paths walk the keys in `KEY_TILE`-sized tiles with an online softmax in fp32 (scores in the
log2 domain, `exp2`), look up each key's block in the block table (int32 block index, then plain
pointer arithmetic on the cache base) and mask by position, so any cache block size works.
"""

import os

import torch
import triton
import triton.language as tl

DECODE_SEGMENT = 512  # keys per split-K segment; a multiple of KEY_TILE
KEY_TILE = 64  # keys per inner-loop tile
PREFILL_ROWS = 64  # (token, head) rows per prefill program
MIN_DOT_ROWS = 16  # tl.dot needs at least 16 rows


@triton.jit
def _attend_tile(
    acc,
    m_i,
    l_i,
    q,
    k_cache_ptr,
    v_cache_ptr,
    table_row_ptr,
    kv_head,
    tile_start,
    kv_end,
    last_pos,
    scale_log2,
    stride_block,
    stride_slot,
    stride_head,
    BLOCK_SIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
    FP32_MATH: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Fold keys [tile_start, min(tile_start + BLOCK_N, kv_end)) into the running softmax.

    Row r may see key positions <= last_pos[r]; m_i is the running max in the log2 domain.
    """
    pos = tile_start + tl.arange(0, BLOCK_N)
    in_range = pos < kv_end
    block = tl.load(table_row_ptr + pos // BLOCK_SIZE, mask=in_range, other=0)
    block = tl.maximum(block, 0)  # a -1 (padding) entry reads block 0, not memory before the cache
    slot = block.to(tl.int64) * stride_block + (pos % BLOCK_SIZE) * stride_slot
    dims = tl.arange(0, D_PAD)
    offsets = slot[:, None] + kv_head * stride_head + dims[None, :]
    kv_mask = in_range[:, None] & (dims[None, :] < HEAD_DIM)
    k = tl.load(k_cache_ptr + offsets, mask=kv_mask, other=0.0)
    v = tl.load(v_cache_ptr + offsets, mask=kv_mask, other=0.0)
    if FP32_MATH:
        k = k.to(tl.float32)
        v = v.to(tl.float32)

    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
    visible = in_range[None, :] & (pos[None, :] <= last_pos[:, None])
    s = tl.where(visible, s, float("-inf"))

    # Every row sees key 0 (prefill) or its whole segment (decode) in its first tile, so m_new
    # is finite from then on and exp2(-inf - m_new) = 0 starts the running sums cleanly.
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, m_new, l_i


@triton.jit
def _locate_q_block(cu_seqlens_q_ptr, q_block_global, num_seqs, BLOCK_Q: tl.constexpr):
    """Map a global q-block index to (sequence, q-block within it).

    Sequence i's q-blocks start at cu_seqlens_q[i] // BLOCK_Q + i, an upper bound that needs no
    host sync; binary search for the last sequence starting at or before q_block_global.
    """
    lo = 0
    hi = num_seqs
    while lo < hi:
        mid = (lo + hi) // 2
        start = tl.load(cu_seqlens_q_ptr + mid) // BLOCK_Q + mid
        if start <= q_block_global:
            lo = mid + 1
        else:
            hi = mid
    seq = lo - 1
    first = tl.load(cu_seqlens_q_ptr + seq) // BLOCK_Q + seq
    return seq, q_block_global - first


@triton.jit
def _prefill_kernel(
    out_ptr,
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    cu_seqlens_q_ptr,
    scale_log2,
    num_seqs,
    stride_q_tok,
    stride_q_head,
    stride_o_tok,
    stride_o_head,
    stride_block,
    stride_slot,
    stride_head,
    stride_table,
    GROUP: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
    FP32_MATH: tl.constexpr,
    PRECISION: tl.constexpr,
):
    seq, q_block = _locate_q_block(cu_seqlens_q_ptr, tl.program_id(0), num_seqs, BLOCK_Q)
    kv_head = tl.program_id(1)
    q_start = tl.load(cu_seqlens_q_ptr + seq)
    n_q = tl.load(cu_seqlens_q_ptr + seq + 1) - q_start
    if n_q <= 1:  # decode sequences belong to the split-K path
        return
    if q_block * BLOCK_Q >= n_q:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    context = seq_len - n_q

    rows = tl.arange(0, BLOCK_M)
    q_idx = q_block * BLOCK_Q + rows // GROUP
    head = kv_head * GROUP + rows % GROUP
    row_ok = (rows < BLOCK_Q * GROUP) & (q_idx < n_q)
    dims = tl.arange(0, D_PAD)
    io_mask = row_ok[:, None] & (dims[None, :] < HEAD_DIM)
    token = (q_start + q_idx).to(tl.int64)
    q = tl.load(
        q_ptr + token[:, None] * stride_q_tok + head[:, None] * stride_q_head + dims[None, :],
        mask=io_mask,
        other=0.0,
    )
    q = q.to(tl.float32) if FP32_MATH else q.to(k_cache_ptr.dtype.element_ty)

    last_pos = context + q_idx
    kv_end = context + tl.minimum((q_block + 1) * BLOCK_Q, n_q)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    table_row_ptr = block_tables_ptr + seq.to(tl.int64) * stride_table
    for tile_start in range(0, kv_end, BLOCK_N):
        acc, m_i, l_i = _attend_tile(
            acc, m_i, l_i, q, k_cache_ptr, v_cache_ptr, table_row_ptr, kv_head, tile_start,
            kv_end, last_pos, scale_log2, stride_block, stride_slot, stride_head,
            BLOCK_SIZE, BLOCK_N, HEAD_DIM, D_PAD, FP32_MATH, PRECISION,
        )  # fmt: skip

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        out_ptr + token[:, None] * stride_o_tok + head[:, None] * stride_o_head + dims[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=io_mask,
    )


@triton.jit
def _decode_segment_kernel(
    part_acc_ptr,  # [B, H, max_segments, D] fp32
    part_max_ptr,  # [B, H, max_segments] fp32, log2 domain
    part_sum_ptr,  # [B, H, max_segments] fp32
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    cu_seqlens_q_ptr,
    scale_log2,
    num_heads,
    max_segments,
    stride_q_tok,
    stride_q_head,
    stride_block,
    stride_slot,
    stride_head,
    stride_table,
    GROUP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    SEGMENT: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
    FP32_MATH: tl.constexpr,
    PRECISION: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    segment = tl.program_id(2)
    q_start = tl.load(cu_seqlens_q_ptr + seq)
    if tl.load(cu_seqlens_q_ptr + seq + 1) - q_start != 1:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    seg_start = segment * SEGMENT
    if seg_start >= seq_len:  # empty segment: the merge never reads it
        return
    seg_end = tl.minimum(seg_start + SEGMENT, seq_len)

    rows = tl.arange(0, BLOCK_M)
    head = kv_head * GROUP + rows
    row_ok = rows < GROUP
    dims = tl.arange(0, D_PAD)
    io_mask = row_ok[:, None] & (dims[None, :] < HEAD_DIM)
    q = tl.load(
        q_ptr + q_start.to(tl.int64) * stride_q_tok + head[:, None] * stride_q_head + dims[None, :],
        mask=io_mask,
        other=0.0,
    )
    q = q.to(tl.float32) if FP32_MATH else q.to(k_cache_ptr.dtype.element_ty)

    last_pos = seq_len - 1 + tl.zeros([BLOCK_M], tl.int32)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    table_row_ptr = block_tables_ptr + seq.to(tl.int64) * stride_table
    for tile_start in range(seg_start, seg_end, BLOCK_N):
        acc, m_i, l_i = _attend_tile(
            acc, m_i, l_i, q, k_cache_ptr, v_cache_ptr, table_row_ptr, kv_head, tile_start,
            seg_end, last_pos, scale_log2, stride_block, stride_slot, stride_head,
            BLOCK_SIZE, BLOCK_N, HEAD_DIM, D_PAD, FP32_MATH, PRECISION,
        )  # fmt: skip

    part = (seq * num_heads + head).to(tl.int64) * max_segments + segment
    tl.store(part_max_ptr + part, m_i, mask=row_ok)
    tl.store(part_sum_ptr + part, l_i, mask=row_ok)
    tl.store(part_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :], acc, mask=io_mask)


@triton.jit
def _decode_merge_kernel(
    out_ptr,
    part_acc_ptr,
    part_max_ptr,
    part_sum_ptr,
    seq_lens_ptr,
    cu_seqlens_q_ptr,
    num_heads,
    max_segments,
    stride_o_tok,
    stride_o_head,
    SEGMENT: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
):
    """Combine one (sequence, head)'s segments, always in segment order (determinism)."""
    seq = tl.program_id(0)
    head = tl.program_id(1)
    q_start = tl.load(cu_seqlens_q_ptr + seq)
    if tl.load(cu_seqlens_q_ptr + seq + 1) - q_start != 1:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    num_segments = tl.cdiv(seq_len, SEGMENT)
    base = (seq * num_heads + head).to(tl.int64) * max_segments
    dims = tl.arange(0, D_PAD)
    d_ok = dims < HEAD_DIM

    m_max = tl.load(part_max_ptr + base, mask=num_segments > 0, other=0.0)
    for segment in range(1, num_segments):
        m_max = tl.maximum(m_max, tl.load(part_max_ptr + base + segment))
    total = tl.zeros([1], tl.float32)
    acc = tl.zeros([D_PAD], tl.float32)
    for segment in range(0, num_segments):
        weight = tl.exp2(tl.load(part_max_ptr + base + segment) - m_max)
        total += weight * tl.load(part_sum_ptr + base + segment)
        part_acc = tl.load(part_acc_ptr + (base + segment) * HEAD_DIM + dims, mask=d_ok, other=0.0)
        acc += weight * part_acc
    # A padded decode slot with no keys (seq_len 0) gets zeros rather than NaN.
    out = acc / tl.where(total > 0, total, 1.0)  # [1] broadcasts over D
    tl.store(
        out_ptr + q_start.to(tl.int64) * stride_o_tok + head * stride_o_head + dims,
        out.to(out_ptr.dtype.element_ty),
        mask=d_ok,
    )


@triton.jit
def _store_kv_kernel(
    key_ptr,
    value_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_mapping_ptr,
    stride_k_tok,
    stride_k_head,
    stride_v_tok,
    stride_v_head,
    stride_block,
    stride_slot,
    stride_head,
    NUM_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    H_PAD: tl.constexpr,
    D_PAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot < 0:  # padded token
        return
    heads = tl.arange(0, H_PAD)
    dims = tl.arange(0, D_PAD)
    mask = (heads[:, None] < NUM_KV_HEADS) & (dims[None, :] < HEAD_DIM)
    dst = (
        (slot // BLOCK_SIZE) * stride_block
        + (slot % BLOCK_SIZE) * stride_slot
        + heads[:, None] * stride_head
        + dims[None, :]
    )
    k = tl.load(
        key_ptr + token * stride_k_tok + heads[:, None] * stride_k_head + dims[None, :], mask=mask
    )
    v = tl.load(
        value_ptr + token * stride_v_tok + heads[:, None] * stride_v_head + dims[None, :], mask=mask
    )
    tl.store(k_cache_ptr + dst, k.to(k_cache_ptr.dtype.element_ty), mask=mask)
    tl.store(v_cache_ptr + dst, v.to(v_cache_ptr.dtype.element_ty), mask=mask)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _check_cache(k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    assert k_cache.shape == v_cache.shape and k_cache.stride() == v_cache.stride()
    assert k_cache.dtype == v_cache.dtype and k_cache.stride(-1) == 1


def store_kv_triton(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write each token's K/V to its slot (block * block_size + offset); negative slots are skipped."""
    _check_cache(k_cache, v_cache)
    assert key.stride(-1) == 1 and value.stride(-1) == 1
    num_tokens, num_kv_heads, head_dim = key.shape
    if num_tokens == 0:
        return
    _store_kv_kernel[(num_tokens,)](
        key, value, k_cache, v_cache, slot_mapping,
        key.stride(0), key.stride(1), value.stride(0), value.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_dim,
        H_PAD=triton.next_power_of_2(num_kv_heads), D_PAD=triton.next_power_of_2(head_dim),
        BLOCK_SIZE=k_cache.shape[1],
    )  # fmt: skip


def _math_options(cache_dtype: torch.dtype) -> dict:
    # The interpreter's tl.dot mishandles bf16, so it computes in fp32; fp32 caches on GPU ask for
    # IEEE products because the default TF32 would lose ~3 digits against the fp32 reference.
    fp32_math = _interpreting() or cache_dtype == torch.float32
    return {"FP32_MATH": fp32_math, "PRECISION": "ieee" if fp32_math else "tf32"}


def paged_attention_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Causal attention of each sequence's last n_i query tokens over its cached tokens.

    Same contract as `paged_attention_reference`: q [N, H, D]; caches [num_blocks, block_size,
    H_kv, D]; block_tables [B, max_blocks] int32; seq_lens [B]; cu_seqlens_q [B + 1].
    """
    _check_cache(k_cache, v_cache)
    assert q.stride(-1) == 1 and block_tables.stride(-1) == 1
    num_tokens, num_heads, head_dim = q.shape
    _, block_size, num_kv_heads, _ = k_cache.shape
    num_seqs = seq_lens.shape[0]
    group = num_heads // num_kv_heads
    out = torch.empty_like(q)
    if num_tokens == 0 or num_seqs == 0:
        return out

    scale_log2 = scale * 1.4426950408889634  # log2(e): softmax via exp2
    cache_strides = (k_cache.stride(0), k_cache.stride(1), k_cache.stride(2))
    common = {
        "BLOCK_N": KEY_TILE,
        "BLOCK_SIZE": block_size,
        "HEAD_DIM": head_dim,
        "D_PAD": max(16, triton.next_power_of_2(head_dim)),
        **_math_options(k_cache.dtype),
    }

    block_m = max(PREFILL_ROWS, triton.next_power_of_2(group))
    block_q = block_m // group
    _prefill_kernel[(num_tokens // block_q + num_seqs, num_kv_heads)](
        out, q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q,
        scale_log2, num_seqs, q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        *cache_strides, block_tables.stride(0),
        GROUP=group, BLOCK_Q=block_q, BLOCK_M=block_m, **common,
    )  # fmt: skip

    # Segments are bounded by the table width, so the grid needs no host sync (CUDA graphs).
    max_segments = triton.cdiv(block_tables.shape[1] * block_size, DECODE_SEGMENT)
    part_acc = torch.empty(
        (num_seqs, num_heads, max_segments, head_dim), dtype=torch.float32, device=q.device
    )
    part_max = torch.empty(
        (num_seqs, num_heads, max_segments), dtype=torch.float32, device=q.device
    )
    part_sum = torch.empty_like(part_max)
    _decode_segment_kernel[(num_seqs, num_kv_heads, max_segments)](
        part_acc, part_max, part_sum, q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q,
        scale_log2, num_heads, max_segments, q.stride(0), q.stride(1),
        *cache_strides, block_tables.stride(0),
        GROUP=group, BLOCK_M=max(MIN_DOT_ROWS, triton.next_power_of_2(group)),
        SEGMENT=DECODE_SEGMENT, **common,
    )  # fmt: skip
    _decode_merge_kernel[(num_seqs, num_heads)](
        out, part_acc, part_max, part_sum, seq_lens, cu_seqlens_q, num_heads, max_segments,
        out.stride(0), out.stride(1),
        SEGMENT=DECODE_SEGMENT, HEAD_DIM=head_dim, D_PAD=common["D_PAD"],
    )  # fmt: skip
    return out
