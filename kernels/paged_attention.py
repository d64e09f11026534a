"""Attention over a paged KV cache: one call for prefill, chunked prefill and decode.

The cache holds K and V in fixed-size blocks, `[num_blocks, block_size, H_kv, D]`; a sequence's
block table lists its blocks in order, so token t of sequence i lives in block
`block_tables[i, t // block_size]` at offset `t % block_size`.
"""

import torch
import torch.nn.functional as F

from kernels.dispatch import use_triton


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
    seq_lens: [B]; cu_seqlens_q: [B + 1]. Returns [N, H, D] in q's dtype.
    """
    block_size = k_cache.shape[1]
    num_heads, num_kv_heads = q.shape[1], k_cache.shape[2]
    out = torch.empty_like(q)
    starts, lens = cu_seqlens_q.tolist(), seq_lens.tolist()
    for i, seq_len in enumerate(lens):
        q_start, q_end = starts[i], starts[i + 1]
        n_q = q_end - q_start
        if n_q == 0:
            continue
        n_blocks = (seq_len + block_size - 1) // block_size
        blocks = block_tables[i, :n_blocks].long()
        k = k_cache[blocks].flatten(0, 1)[:seq_len].float()  # [S, H_kv, D]
        v = v_cache[blocks].flatten(0, 1)[:seq_len].float()
        group = num_heads // num_kv_heads
        k = k.repeat_interleave(group, dim=1).transpose(0, 1)  # [H, S, D]
        v = v.repeat_interleave(group, dim=1).transpose(0, 1)
        qi = q[q_start:q_end].float().transpose(0, 1)  # [H, n_q, D]
        # Query j sits at position seq_len - n_q + j and sees positions up to and including it.
        q_pos = torch.arange(seq_len - n_q, seq_len, device=q.device)[:, None]
        mask = torch.arange(seq_len, device=q.device)[None, :] <= q_pos
        o = F.scaled_dot_product_attention(qi, k, v, attn_mask=mask, scale=scale)
        out[q_start:q_end] = o.transpose(0, 1).to(q.dtype)
    return out


def store_kv(key, value, k_cache, v_cache, slot_mapping) -> None:
    if use_triton(key):
        from kernels.triton_paged_attention import store_kv_triton

        return store_kv_triton(key, value, k_cache, v_cache, slot_mapping)
    return store_kv_reference(key, value, k_cache, v_cache, slot_mapping)


def paged_attention(q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, scale):
    if use_triton(q):
        from kernels.triton_paged_attention import paged_attention_triton

        return paged_attention_triton(
            q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, scale
        )
    return paged_attention_reference(q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, scale)
