"""Attention over a paged KV cache: one call for prefill, chunked prefill and decode.

The cache holds K and V in fixed-size blocks, `[num_blocks, block_size, H_kv, D]`; a sequence's
block table lists its blocks in order, so token t of sequence i lives in block
`block_tables[i, t // block_size]` at offset `t % block_size`.
"""

from completion_kernels.dispatch import use_cpu_kernel, use_triton
from completion_kernels.paged_attention_reference import (
    paged_attention_reference,
    store_kv_reference,
)


def store_kv(key, value, k_cache, v_cache, slot_mapping) -> None:
    if use_triton(key):
        from completion_kernels.triton_paged_attention import store_kv_triton

        return store_kv_triton(key, value, k_cache, v_cache, slot_mapping)
    if use_cpu_kernel(key):
        from completion_kernels.cpu_paged_attention import store_kv_cpu

        return store_kv_cpu(key, value, k_cache, v_cache, slot_mapping)
    return store_kv_reference(key, value, k_cache, v_cache, slot_mapping)


def paged_attention(q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, scale, plan=None):
    """`plan`: the CPU kernel's plan when the caller made it once for all layers
    (`plan_sequences`); the other implementations ignore it."""
    if use_triton(q):
        from completion_kernels.triton_paged_attention import paged_attention_triton

        return paged_attention_triton(
            q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, scale
        )
    if use_cpu_kernel(q):
        from completion_kernels.cpu_paged_attention import paged_attention_cpu

        return paged_attention_cpu(
            q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, scale, plan
        )
    return paged_attention_reference(
        q, k_cache, v_cache, block_tables, seq_lens, cu_seqlens_q, scale
    )
