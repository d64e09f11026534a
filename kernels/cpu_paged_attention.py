"""Paged attention on the CPU: a compiled kernel for sequences with a few query tokens, torch's
flash attention over head-major runs for the rest.

A decode step has one query token per sequence (a few more with speculative drafts or a
keystroke's new characters). For those, `csrc/cpu_paged_attention.cpp` reads each sequence's
blocks in place through its block table, every sequence of the step in one call, a (sequence,
KV head) per task: one operator call per layer, where torch needs a dozen views and an attention
call per sequence (at 16 sessions those calls cost more than the attention did). Prefill chunks
are matrix products, where torch's flash attention is the stronger one; it wants each head's keys
as one stretch of rows, so the engine keeps its CPU caches head-major in storage behind the
contract's shape (`ModelRunner._empty_cache`): a run of consecutive blocks is then one stretch
per head, read as a view, and several runs are concatenated. A token-major cache works too. Same
contract as `paged_attention_reference`, which both paths must equal.
"""

from dataclasses import dataclass

import torch
from completion_kernels.cpu_extension import bf16_kernels, cpu_kernels
from completion_kernels.paged_attention_reference import attend_last, store_kv_reference

# Sequences with at most this many query tokens in a step go to the compiled kernel: its work
# grows with queries x keys without a matrix product's blocking, which flash attention has. The
# loop that converts to fp32 and flash crossed at ≈24 queries; the AVX512-BF16 path stayed 3.5-4x
# faster than flash from 16 to 128 queries over 1,000 keys (blocks in one run or scattered), so
# bf16 caches send it sequences of up to 128 (a keystroke's tail, a short chunk).
MAX_QUERIES_IN_PLACE = 16
MAX_QUERIES_IN_PLACE_BF16 = 128


def max_queries_in_place(cache_dtype: torch.dtype) -> int:
    if cache_dtype == torch.bfloat16 and bf16_kernels() is not None:
        return MAX_QUERIES_IN_PLACE_BF16
    return MAX_QUERIES_IN_PLACE


@dataclass(frozen=True)
class SequenceRuns:
    """One sequence with queries this step: its rows of q, its length, its runs of blocks."""

    q_start: int
    q_end: int
    seq_len: int
    runs: list[tuple[int, int]]


@dataclass(frozen=True)
class CpuAttentionPlan:
    """Which path attends each sequence of a step; the same for every layer."""

    in_place: torch.Tensor  # int32 indices of the sequences the compiled kernel attends
    runs: list[SequenceRuns]  # the others, through flash attention


def plan_sequences(
    tables: list[list[int]],
    seq_lens: list[int],
    cu_seqlens_q: list[int],
    block_size: int,
    max_queries_in_place: int = MAX_QUERIES_IN_PLACE,
) -> CpuAttentionPlan:
    """The model runner makes it once a step, from its lists."""
    if cpu_kernels() is None:
        max_queries_in_place = 0
    in_place, runs = [], []
    for i, n in enumerate(seq_lens):
        q_start, q_end = cu_seqlens_q[i], cu_seqlens_q[i + 1]
        if q_end - q_start > max_queries_in_place:
            runs.append(SequenceRuns(q_start, q_end, n, block_runs(tables[i], n, block_size)))
        elif q_end > q_start:
            in_place.append(i)
    return CpuAttentionPlan(torch.tensor(in_place, dtype=torch.int32), runs)


def store_kv_cpu(key, value, k_cache, v_cache, slot_mapping) -> None:
    """`store_kv_reference`'s contract in one compiled call (the reference indexes a dozen times)."""
    if (kernels := cpu_kernels()) is None:
        return store_kv_reference(key, value, k_cache, v_cache, slot_mapping)
    kernels.store_kv(key, value, k_cache, v_cache, slot_mapping)


def paged_attention_cpu(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    scale: float,
    plan: CpuAttentionPlan | None = None,
) -> torch.Tensor:
    """q: [N, H, D]; caches: [num_blocks, block_size, H_kv, D]; block_tables: [B, max_blocks];
    seq_lens: [B]; cu_seqlens_q: [B + 1]. Returns [N, H, D] in q's dtype."""
    if plan is None:
        lists = (block_tables.tolist(), seq_lens.tolist(), cu_seqlens_q.tolist())
        plan = plan_sequences(*lists, k_cache.shape[1], max_queries_in_place(k_cache.dtype))
    out = torch.empty(q.shape, dtype=k_cache.dtype, device=q.device)
    if len(plan.in_place):
        cpu_kernels().paged_attention_rows(
            q.to(k_cache.dtype),
            k_cache,
            v_cache,
            block_tables,
            seq_lens,
            cu_seqlens_q,
            scale,
            plan.in_place,
            out,
        )
    for seq in plan.runs:
        k, v = (head_major(cache, seq.runs) for cache in (k_cache, v_cache))
        queries = q[seq.q_start : seq.q_end]
        out[seq.q_start : seq.q_end] = attend_last(queries, k, v, scale)
    return out.to(q.dtype)


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
