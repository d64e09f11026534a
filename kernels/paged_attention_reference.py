"""The torch reference of paged attention: the definition every kernel must equal.

Simple over fast: each sequence's blocks are gathered into one contiguous K/V and attended with
`scaled_dot_product_attention`. The Triton kernel (`triton_paged_attention.py`) and the CPU
kernel (`cpu_paged_attention.py`) are tested against it; the dispatcher
(`paged_attention.py`) falls back to it where neither runs. Cache layout: `paged_attention.py`.
"""

import torch
import torch.nn.functional as F


def store_kv_reference(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write each token's K/V to its slot (block * block_size + offset); negative slots are skipped."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    flat_k = k_cache.view(-1, *k_cache.shape[2:])
    flat_v = v_cache.view(-1, *v_cache.shape[2:])
    flat_k[slots] = key[keep].to(k_cache.dtype)
    flat_v[slots] = value[keep].to(v_cache.dtype)


def paged_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Causal attention of each sequence's last n_i query tokens over its cached tokens.

    q: [N, H, D]; caches: [num_blocks, block_size, H_kv, D]; block_tables: [B, max_blocks];
    seq_lens: [B]; cu_seqlens_q: [B + 1]. Returns [N, H, D] in q's dtype. Each sequence's
    blocks are gathered into one contiguous K/V: simple, and the definition the kernels
    (Triton on GPUs, `kernels/cpu_paged_attention.py` on CPUs) must equal.
    """
    out = torch.zeros_like(q)
    starts, lens = cu_seqlens_q.tolist(), seq_lens.tolist()
    for i, seq_len in enumerate(lens):
        q_start, q_end = starts[i], starts[i + 1]
        if q_end > q_start:
            k, v = (_gather(c, block_tables[i : i + 1], seq_len) for c in (k_cache, v_cache))
            out[q_start:q_end] = attend_last(q[q_start:q_end], k, v, scale)
    return out


def _gather(cache: torch.Tensor, block_tables: torch.Tensor, length: int) -> torch.Tensor:
    """[B, H_kv, length, D] from each sequence's blocks (padding entries read block 0)."""
    n_blocks = -(-length // cache.shape[1])
    blocks = block_tables[:, :n_blocks].long().clamp(min=0)
    return cache[blocks].flatten(1, 2)[:, :length].transpose(1, 2).float()


def attend_last(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q: [n, H, D], the last n of the S tokens of one sequence; k, v: [1, H_kv, S, D], whose
    dtype the math runs in. Query j sits at position S - n + j and sees keys up to there."""
    n, seq_len = q.shape[0], k.shape[2]
    qi = q.to(k.dtype).transpose(0, 1)[None]  # [1, H, n, D]
    if n == 1:  # the last token sees everything
        mask, causal = None, False
    elif n == seq_len:
        mask, causal = None, True
    else:  # a chunk after a cached prefix: query j sits at position seq_len - n + j
        q_pos = torch.arange(seq_len - n, seq_len, device=q.device)[:, None]
        mask, causal = torch.arange(seq_len, device=q.device)[None, :] <= q_pos, False
    o = F.scaled_dot_product_attention(
        qi, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=True
    )
    return o[0].transpose(0, 1).to(q.dtype)
