"""The CPU paged attention, both paths (the compiled kernel reading blocks in place, flash
attention over head-major runs), vs the gather reference, on fresh random caches whose block
tables mix runs of consecutive blocks with scattered ones."""

import completion_kernels.cpu_paged_attention as cpu_attention
import pytest
import torch
from completion_kernels.cpu_extension import bf16_kernels, cpu_kernels
from completion_kernels.cpu_paged_attention import (
    MAX_QUERIES_IN_PLACE,
    MAX_QUERIES_IN_PLACE_BF16,
    block_runs,
    head_major,
    max_queries_in_place,
    paged_attention_cpu,
    plan_sequences,
    store_kv_cpu,
)
from completion_kernels.paged_attention_reference import (
    paged_attention_reference,
    store_kv_reference,
)

BLOCK_SIZE = 16
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
# Queries a sequence may have and still go to the compiled kernel: all of them, or none.
PATHS = {"compiled": MAX_QUERIES_IN_PLACE, "flash": 0}


def _runs_of_blocks(seq_lens: list[int], num_blocks: int, gen: torch.Generator) -> torch.Tensor:
    """Tables whose blocks come in runs of random lengths (1-4) at random places in the pool."""
    free = torch.randperm(num_blocks // 4, generator=gen).tolist()  # 4-block slabs
    tables = torch.full((len(seq_lens), num_blocks), -1, dtype=torch.int32)
    for i, length in enumerate(seq_lens):
        needed, row = -(-length // BLOCK_SIZE), []
        while len(row) < needed:
            slab = free.pop()
            run = int(torch.randint(1, 5, (1,), generator=gen))
            row.extend(range(slab * 4, slab * 4 + run))
        tables[i, :needed] = torch.tensor(row[:needed], dtype=torch.int32)
    return tables


def _case(seq_lens, q_lens, num_heads, num_kv_heads, dtype, seed, head_dim=32, head_major=False):
    gen = torch.Generator().manual_seed(seed)
    num_blocks = 4 * (sum(-(-n // BLOCK_SIZE) for n in seq_lens) + 4)
    shape = (num_blocks, BLOCK_SIZE, num_kv_heads, head_dim)
    # Slots no sequence owns hold large garbage, so reading past a sequence's end shows.
    k_cache = (torch.randn(shape, generator=gen) * 100).to(dtype)
    v_cache = (torch.randn(shape, generator=gen) * 100).to(dtype)
    if head_major:  # the engine's CPU caches: the same shape over [H_kv, blocks, block, D] storage
        k_cache, v_cache = (
            c.permute(2, 0, 1, 3).contiguous().permute(1, 2, 0, 3) for c in (k_cache, v_cache)
        )
    tables = _runs_of_blocks(seq_lens, num_blocks, gen)
    for i, n in enumerate(seq_lens):
        for t in range(n):
            block, offset = int(tables[i, t // BLOCK_SIZE]), t % BLOCK_SIZE
            k_cache[block, offset] = torch.randn(num_kv_heads, head_dim, generator=gen).to(dtype)
            v_cache[block, offset] = torch.randn(num_kv_heads, head_dim, generator=gen).to(dtype)
    q = torch.randn(sum(q_lens), num_heads, head_dim, generator=gen).to(dtype)
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    return q, k_cache, v_cache, tables, torch.tensor(seq_lens, dtype=torch.int32), cu


def _check(
    seq_lens,
    q_lens,
    num_heads=8,
    num_kv_heads=2,
    dtype=torch.float32,
    seed=0,
    scale=None,
    head_major=False,
    path="compiled",
    head_dim=32,
    in_place=None,  # the most queries a sequence may have in the compiled kernel: path's default
):
    q, k_cache, v_cache, tables, lens, cu = _case(
        seq_lens, q_lens, num_heads, num_kv_heads, dtype, seed, head_dim, head_major
    )
    scale = scale or q.shape[-1] ** -0.5
    in_place = PATHS[path] if in_place is None else in_place
    lists = (tables.tolist(), seq_lens, cu.tolist(), BLOCK_SIZE, in_place)
    got = paged_attention_cpu(q, k_cache, v_cache, tables, lens, cu, scale, plan_sequences(*lists))
    want = paged_attention_reference(q, k_cache, v_cache, tables, lens, cu, scale)
    assert got.dtype == q.dtype and got.shape == q.shape
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


def test_block_runs():
    assert block_runs([4, 5, 6, 9, 2, 3], 90, 16) == [(4, 48), (9, 16), (2, 26)]
    assert block_runs([7, 8, 3], 17, 16) == [(7, 17)]  # only the blocks the length uses
    assert block_runs([0], 1, 16) == [(0, 1)]


def test_compiled_kernel_builds():
    """The compiled path is the one that serves: a machine that runs the tests must build it."""
    assert cpu_kernels() is not None


def test_plan_sends_few_query_sequences_to_the_compiled_kernel():
    plan = plan_sequences([[0, 1, 2], [3], [4, 5]], [40, 9, 20], [0, 1, 1, 21], BLOCK_SIZE)
    assert plan.in_place.tolist() == [0]  # sequence 1 has no queries, 2 has 20
    assert [(s.q_start, s.q_end, s.runs) for s in plan.runs] == [(1, 21, [(4, 20)])]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("head_major_cache", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_decodes_over_many_runs(seed, head_major_cache, path):
    _check([1, 15, 16, 17, 130, 333], [1] * 6, seed=seed, head_major=head_major_cache, path=path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("head_major_cache", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_prefill_and_chunks_after_cached_prefixes(seed, head_major_cache, path):
    """Whole prompts, chunks continuing cached prefixes (the causal mask crosses runs),
    speculative verification rows, and a sequence with no queries this step."""
    seq_lens, q_lens = [40, 97, 200, 58, 30, 16], [40, 33, 5, 1, 0, 16]
    _check(seq_lens, q_lens, seed=seed, head_major=head_major_cache, path=path)


def test_single_run_sequences_on_head_major_caches():
    """One run of blocks in a head-major cache is read as a view, without a copy."""
    gen = torch.Generator().manual_seed(11)
    q, k_cache, v_cache, _, _, _ = _case([64], [1], 8, 2, torch.float32, 11, head_major=True)
    tables = torch.arange(4, dtype=torch.int32)[None]  # blocks 0-3: one run
    lens, cu = torch.tensor([64], dtype=torch.int32), torch.tensor([0, 1], dtype=torch.int32)
    k_cache[:4] = torch.randn(4, BLOCK_SIZE, 2, 32, generator=gen)
    got = paged_attention_cpu(q, k_cache, v_cache, tables, lens, cu, 0.2)
    want = paged_attention_reference(q, k_cache, v_cache, tables, lens, cu, 0.2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert head_major(k_cache, [(0, 64)]).data_ptr() == k_cache.data_ptr()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(4, 4), (8, 1), (6, 2), (12, 4)])
def test_group_layouts(num_heads, num_kv_heads, path):
    _check([70, 45], [1, 12], num_heads, num_kv_heads, seed=num_heads, path=path)


@pytest.mark.parametrize("head_dim", [64, 80, 128])
def test_head_dims(head_dim):
    """The compiled kernel's unrolled sizes (64, 128) and its general loop (80)."""
    _check([70, 33], [1, 3], head_dim=head_dim, seed=head_dim)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_caches(dtype, path):
    _check([150, 64, 21], [1, 9, 21], dtype=dtype, seed=5, path=path)


@pytest.mark.parametrize("head_major_cache", [False, True])
@pytest.mark.parametrize(("num_heads", "num_kv_heads"), [(8, 2), (4, 4), (8, 1)])
@pytest.mark.parametrize("head_dim", [32, 64, 128])
def test_bf16_caches_in_the_compiled_kernel(head_dim, num_heads, num_kv_heads, head_major_cache):
    """bf16 with 16-token blocks, where AVX512-BF16 takes pairs of values: odd lengths (a block's
    last pair half empty), 1-100 query tokens (rows in several groups of registers; a whole
    prompt), every sequence in the compiled kernel."""
    seq_lens, q_lens = [1, 15, 17, 130, 333, 64, 100], [1, 1, 5, 16, 9, 40, 100]
    _check(
        seq_lens,
        q_lens,
        num_heads,
        num_kv_heads,
        torch.bfloat16,
        seed=head_dim + num_heads,
        head_major=head_major_cache,
        head_dim=head_dim,
        in_place=MAX_QUERIES_IN_PLACE_BF16,
    )


def test_bf16_caches_send_longer_chunks_in_place_where_the_cpu_has_the_instructions():
    assert max_queries_in_place(torch.float32) == MAX_QUERIES_IN_PLACE
    bf16 = MAX_QUERIES_IN_PLACE_BF16 if bf16_kernels() is not None else MAX_QUERIES_IN_PLACE
    assert max_queries_in_place(torch.bfloat16) == bf16


@pytest.mark.parametrize("path", PATHS)
def test_peaked_scores_across_runs(path):
    """Scores in the hundreds: a softmax that is one-hot in practice still picks the right key."""
    _check([180, 75], [1, 20], scale=8.0, seed=6, path=path)


@pytest.mark.parametrize("layout", ["heads then kv", "per head"])
def test_queries_sliced_from_a_fused_projection(layout):
    """The models pass q as a view of a fused projection: q/k/v heads one after another (Llama),
    or each head's q, k and v side by side (GPTBigCode's multi-head layout)."""
    q, k_cache, v_cache, tables, lens, cu = _case([90, 30], [2, 1], 8, 2, torch.float32, 7)
    if layout == "heads then kv":  # [N, H + 2 H_kv, D], q first
        sliced = torch.cat([q, torch.randn(3, 4, 32)], dim=1)[:, :8]
    else:  # [N, H, 3 D], each head's q first
        sliced = torch.cat([q, torch.randn(3, 8, 64)], dim=2)[..., :32]
    got = paged_attention_cpu(sliced, k_cache, v_cache, tables, lens, cu, 0.3)
    want = paged_attention_reference(q, k_cache, v_cache, tables, lens, cu, 0.3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_major_cache", [False, True])
def test_store_kv(head_major_cache, dtype):
    """Each token's K/V lands in its slot, skipped slots (< 0) stay as they were, f32 keys are
    cast to the cache's dtype; keys may be a view of a fused projection."""
    gen = torch.Generator().manual_seed(3)
    caches = [torch.randn(6, BLOCK_SIZE, 2, 32, generator=gen).to(dtype) for _ in range(4)]
    if head_major_cache:
        caches = [c.permute(2, 0, 1, 3).contiguous().permute(1, 2, 0, 3) for c in caches]
    got_k, got_v, want_k, want_v = caches
    want_k.copy_(got_k), want_v.copy_(got_v)
    fused = torch.randn(5, 8, 32, generator=gen)
    key, value = fused[:, 2:4], fused[:, 6:8]
    slots = torch.tensor([17, -1, 95, 0, 40])
    store_kv_cpu(key, value, got_k, got_v, slots)
    store_kv_reference(key, value, want_k, want_v, slots)
    assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v)
    assert torch.equal(got_k.flatten(0, 1)[95], key[2].to(dtype))


def test_without_the_compiled_kernels_torch_serves_every_sequence(monkeypatch):
    """A machine without a compiler: the plan sends every sequence to flash attention and the
    store goes through the reference, with the same results."""
    monkeypatch.setattr(cpu_attention, "cpu_kernels", lambda: None)
    q, k_cache, v_cache, tables, lens, cu = _case([70, 30], [1, 3], 8, 2, torch.float32, 9)
    plan = plan_sequences(tables.tolist(), lens.tolist(), cu.tolist(), BLOCK_SIZE)
    assert len(plan.in_place) == 0 and len(plan.runs) == 2
    got = paged_attention_cpu(q, k_cache, v_cache, tables, lens, cu, 0.3, plan)
    want = paged_attention_reference(q, k_cache, v_cache, tables, lens, cu, 0.3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    key = torch.randn(2, 2, 32)
    store_kv_cpu(key, key, k_cache, v_cache, torch.tensor([5, -1]))
    assert torch.equal(k_cache.flatten(0, 1)[5], key[0])
