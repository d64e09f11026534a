"""Paged attention on the CPU: each sequence's keys and values read head-major, run by run.

Torch's flash attention for CPU wants each head's keys as one stretch of rows. The contract's
token-major layout (`[num_blocks, block_size, H_kv, D]`, what the GPU kernels read) gives it keys
strided by H_kv·D instead, which on cold caches was slower than copying them first. So the
engine keeps its CPU caches head-major in storage behind that same shape
(`ModelRunner._empty_cache`): a run of consecutive blocks is then one stretch per head, a
sequence in one run (a fresh prompt) is read as a view, and one in several runs (a keystroke's
cached prefix and its new blocks) is concatenated, copying stretches. A token-major cache works
too, through a copy per run. A decode folds its grouped-query heads into query rows
(`[H_kv, G, D]`), so K/V are never repeated. Same contract as `paged_attention_reference`,
which it must equal.
"""

import torch
import torch.nn.functional as F


def paged_attention_cpu(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """q: [N, H, D]; caches: [num_blocks, block_size, H_kv, D]; block_tables: [B, max_blocks];
    seq_lens: [B]; cu_seqlens_q: [B + 1]. Returns [N, H, D] in q's dtype."""
    out = torch.zeros_like(q)
    starts, lens, tables = cu_seqlens_q.tolist(), seq_lens.tolist(), block_tables.tolist()
    block_size = k_cache.shape[1]
    for i, seq_len in enumerate(lens):
        q_start, q_end = starts[i], starts[i + 1]
        if q_end > q_start:
            runs = block_runs(tables[i], seq_len, block_size)
            k, v = (head_major(cache, runs) for cache in (k_cache, v_cache))
            queries = q[q_start:q_end].to(k.dtype)
            attend = attend_one if q_end - q_start == 1 else attend_chunk
            out[q_start:q_end] = attend(queries, k, v, scale)
    return out


def block_runs(table: list[int], length: int, block_size: int) -> list[tuple[int, int]]:
    """(first block, tokens) of each maximal run of consecutive blocks holding the sequence."""
    n_blocks = -(-length // block_size)
    runs, start = [], 0
    for j in range(1, n_blocks + 1):
        if j == n_blocks or table[j] != table[j - 1] + 1:
            runs.append((table[start], min(j * block_size, length) - start * block_size))
            start = j
    return runs


def head_major(cache: torch.Tensor, runs: list[tuple[int, int]]) -> torch.Tensor:
    """[1, H_kv, S, D], each head's keys contiguous: the runs' tokens in order."""
    block_size = cache.shape[1]
    views = [
        cache[first : first + -(-tokens // block_size)].flatten(0, 1)[:tokens].transpose(0, 1)
        for first, tokens in runs
    ]
    if len(views) == 1 and views[0].stride(1) == cache.shape[-1]:
        return views[0][None]  # a head-major cache (the engine's on the CPU): a view is enough
    return torch.cat(views, dim=1)[None]


def attend_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The last token (q: [1, H, D]) sees every key: the G heads sharing a KV head are G rows."""
    _, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    rows = q.view(1, num_kv_heads, num_heads // num_kv_heads, head_dim)
    return F.scaled_dot_product_attention(rows, k, v, scale=scale).view(1, num_heads, head_dim)


def attend_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The last n of S tokens (q: [n, H, D]), each seeing the keys up to its own position."""
    n, seq_len = q.shape[0], k.shape[2]
    mask = None
    if n < seq_len:  # a chunk after a cached prefix: query j sits at position seq_len - n + j
        mask = torch.arange(seq_len)[None, :] <= torch.arange(seq_len - n, seq_len)[:, None]
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None],
        k,
        v,
        attn_mask=mask,
        is_causal=mask is None,
        scale=scale,
        enable_gqa=True,
    )
    return o[0].transpose(0, 1)
