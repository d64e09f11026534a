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

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.paged_attention import attend_last


@dataclass(frozen=True)
class SequenceRuns:
    """One sequence with queries this step: its rows of q, its length, its runs of blocks."""

    q_start: int
    q_end: int
    seq_len: int
    runs: list[tuple[int, int]]


def plan_sequences(
    tables: list[list[int]], seq_lens: list[int], cu_seqlens_q: list[int], block_size: int
) -> list[SequenceRuns]:
    """The same for every layer of a step: the model runner makes it once, from its lists."""
    return [
        SequenceRuns(cu_seqlens_q[i], cu_seqlens_q[i + 1], n, block_runs(tables[i], n, block_size))
        for i, n in enumerate(seq_lens)
        if cu_seqlens_q[i + 1] > cu_seqlens_q[i]
    ]


def paged_attention_cpu(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    scale: float,
    plan: list[SequenceRuns] | None = None,
) -> torch.Tensor:
    """q: [N, H, D]; caches: [num_blocks, block_size, H_kv, D]; block_tables: [B, max_blocks];
    seq_lens: [B]; cu_seqlens_q: [B + 1]. Returns [N, H, D] in q's dtype."""
    if plan is None:
        lists = (block_tables.tolist(), seq_lens.tolist(), cu_seqlens_q.tolist())
        plan = plan_sequences(*lists, k_cache.shape[1])
    out = torch.zeros_like(q)
    for seq in plan:
        k, v = (head_major(cache, seq.runs) for cache in (k_cache, v_cache))
        queries = q[seq.q_start : seq.q_end]
        attend = attend_one if seq.q_end - seq.q_start == 1 else attend_last
        out[seq.q_start : seq.q_end] = attend(queries, k, v, scale)
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
    rows = q.to(k.dtype).view(1, num_kv_heads, num_heads // num_kv_heads, head_dim)
    o = F.scaled_dot_product_attention(rows, k, v, scale=scale)
    return o.view(1, num_heads, head_dim).to(q.dtype)
