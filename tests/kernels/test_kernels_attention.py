"""Triton paged attention vs the torch reference: compiled on CUDA, else in the Triton
interpreter on CPU (tests/conftest.py sets TRITON_INTERPRET=1 there)."""

import pytest
import torch
from completion_kernels import triton_paged_attention as tpa
from completion_kernels.paged_attention_reference import (
    paged_attention_reference,
    store_kv_reference,
)

pytestmark = pytest.mark.slow  # Triton's interpreter on a CPU (≈12 s)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BLOCK_SIZE = 16
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _scattered_tables(seq_lens: list[int], num_blocks: int, gen: torch.Generator) -> torch.Tensor:
    """Block tables drawn from a random permutation of the pool, -1 padded."""
    needed = [(n + BLOCK_SIZE - 1) // BLOCK_SIZE for n in seq_lens]
    pool = torch.randperm(num_blocks, generator=gen)
    tables = torch.full((len(seq_lens), max(max(needed), 1)), -1, dtype=torch.int32)
    used = 0
    for i, n in enumerate(needed):
        tables[i, :n] = pool[used : used + n].to(torch.int32)
        used += n
    return tables


def _make_case(
    seq_lens: list[int],
    q_lens: list[int],
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    cache_dtype: torch.dtype,
    seed: int,
):
    gen = torch.Generator().manual_seed(seed)
    num_blocks = sum((n + BLOCK_SIZE - 1) // BLOCK_SIZE for n in seq_lens) + 3
    shape = (num_blocks, BLOCK_SIZE, num_kv_heads, head_dim)
    # Unused slots hold garbage so reading past a sequence's end shows up as a mismatch.
    k_cache = (torch.randn(shape, generator=gen) * 100).to(cache_dtype)
    v_cache = (torch.randn(shape, generator=gen) * 100).to(cache_dtype)
    tables = _scattered_tables(seq_lens, num_blocks, gen)
    for i, n in enumerate(seq_lens):
        slots = torch.stack(
            [tables[i, t // BLOCK_SIZE].long() * BLOCK_SIZE + t % BLOCK_SIZE for t in range(n)]
        ) if n else torch.empty(0, dtype=torch.long)  # fmt: skip
        key = torch.randn(n, num_kv_heads, head_dim, generator=gen)
        value = torch.randn(n, num_kv_heads, head_dim, generator=gen)
        store_kv_reference(key, value, k_cache, v_cache, slots)
    q = torch.randn(sum(q_lens), num_heads, head_dim, generator=gen).to(cache_dtype)
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    case = (q, k_cache, v_cache, tables, torch.tensor(seq_lens, dtype=torch.int32), cu)
    return tuple(t.to(DEVICE) for t in case)


def _check(seq_lens, q_lens, num_heads, num_kv_heads, head_dim=32, dtype=torch.float32, seed=0):
    q, k_cache, v_cache, tables, lens, cu = _make_case(
        seq_lens, q_lens, num_heads, num_kv_heads, head_dim, dtype, seed
    )
    scale = head_dim**-0.5
    got = tpa.paged_attention_triton(q, k_cache, v_cache, tables, lens, cu, scale)
    want = paged_attention_reference(q, k_cache, v_cache, tables, lens, cu, scale)
    assert got.dtype == q.dtype and got.shape == q.shape
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Interpreter-sized tiles, so a few dozen programs cover many tiles and segments."""
    monkeypatch.setattr(tpa, "KEY_TILE", 16)
    monkeypatch.setattr(tpa, "DECODE_SEGMENT", 32)
    monkeypatch.setattr(tpa, "PREFILL_ROWS", 16)


@pytest.mark.parametrize("seq_len", [1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 100])
def test_decode_lengths(seq_len):
    _check([seq_len, 7], [1, 1], num_heads=4, num_kv_heads=2, seed=seq_len)


@pytest.mark.parametrize("seq_len", [1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 45])
def test_prefill_lengths(seq_len):
    _check([seq_len, 20], [seq_len, 20], num_heads=4, num_kv_heads=2, seed=seq_len)


@pytest.mark.parametrize(
    ("num_heads", "num_kv_heads"), [(2, 2), (4, 2), (8, 1), (16, 2), (3, 1), (14, 2)]
)
def test_group_layouts(num_heads, num_kv_heads):
    """MHA (group 1), GQA groups 2 and 8, MQA, and groups that are not powers of two."""
    _check([40, 70, 3], [40, 1, 3], num_heads, num_kv_heads, seed=num_heads)


def test_chunked_prefill_after_cached_prefix():
    """Chunks of 9 and 17 tokens continuing 40- and 23-token cached prefixes, beside a decode."""
    _check([49, 40, 81], [9, 17, 1], num_heads=4, num_kv_heads=1, seed=3)


def test_decode_split_segments_with_empty_tail():
    """A long sequence spans 5 segments while the short ones leave most segments empty."""
    _check([150, 2, 33, 64], [1, 1, 1, 1], num_heads=8, num_kv_heads=8, seed=4)


def test_peaked_scores_across_segments():
    """Scores in the hundreds: the merge must rescale by the true maximum over all segments."""
    q, k_cache, v_cache, tables, lens, cu = _make_case(
        [160, 40], [1, 40], 8, 2, 32, torch.float32, 9
    )
    got = tpa.paged_attention_triton(q, k_cache, v_cache, tables, lens, cu, 200.0)
    want = paged_attention_reference(q, k_cache, v_cache, tables, lens, cu, 200.0)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_head_dims(head_dim):
    _check([37, 50], [37, 1], num_heads=4, num_kv_heads=2, head_dim=head_dim, seed=head_dim)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_caches(dtype):
    _check([37, 50, 18], [37, 1, 5], num_heads=4, num_kv_heads=2, head_dim=64, dtype=dtype)


def test_padded_sequences_are_skipped():
    """A sequence with no queries (CUDA-graph padding) writes nothing and disturbs nothing."""
    _check([20, 0, 31], [1, 0, 31], num_heads=4, num_kv_heads=2, seed=5)


def test_padded_decode_slots():
    """CUDA-graph padding: decode slots with no keys, or a -1 table, give finite output."""
    q, k_cache, v_cache, tables, lens, cu = _make_case(
        [20, 0, 1], [1, 1, 1], 4, 2, 32, torch.float32, 10
    )
    tables[2] = -1
    got = tpa.paged_attention_triton(q, k_cache, v_cache, tables, lens, cu, 0.2)
    want = paged_attention_reference(q[:1], k_cache, v_cache, tables[:1], lens[:1], cu[:2], 0.2)
    torch.testing.assert_close(got[:1], want, atol=1e-4, rtol=1e-4)
    assert torch.equal(got[1], torch.zeros_like(got[1])) and got[2].isfinite().all()


def test_default_tiles_match_reference(monkeypatch):
    """The production tile and segment sizes, with contexts that cross a segment boundary."""
    monkeypatch.setattr(tpa, "KEY_TILE", 64)
    monkeypatch.setattr(tpa, "DECODE_SEGMENT", 512)
    monkeypatch.setattr(tpa, "PREFILL_ROWS", 64)
    _check([600, 70], [1, 70], num_heads=4, num_kv_heads=2, head_dim=64, seed=6)


def test_decode_is_batch_invariant():
    """A sequence's decode output is bit-identical alone and inside a larger mixed batch."""
    q, k_cache, v_cache, tables, lens, cu = _make_case(
        [150, 9, 70], [1, 9, 1], 4, 2, 32, torch.float32, seed=7
    )
    batched = tpa.paged_attention_triton(q, k_cache, v_cache, tables, lens, cu, 0.2)
    alone = tpa.paged_attention_triton(q[:1], k_cache, v_cache, tables[:1], lens[:1], cu[:2], 0.2)
    assert torch.equal(batched[:1], alone)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_store_kv_matches_reference(dtype):
    gen = torch.Generator().manual_seed(8)
    shape = (6, BLOCK_SIZE, 2, 64)
    k_want = torch.zeros(shape, dtype=dtype, device=DEVICE)
    v_want, k_got, v_got = k_want.clone(), k_want.clone(), k_want.clone()
    # Non-contiguous key/value (views of a fused projection) and padded slots. K/V come in the
    # cache dtype as from the model: the interpreter truncates fp32 -> bf16 where GPUs round.
    kv = torch.randn(5, 2, 2, 64, generator=gen).to(DEVICE, dtype)
    key, value = kv[:, 0], kv[:, 1]
    slots = torch.tensor([3, 17, -1, 95, 40], dtype=torch.int64, device=DEVICE)
    store_kv_reference(key, value, k_want, v_want, slots)
    tpa.store_kv_triton(key, value, k_got, v_got, slots)
    assert torch.equal(k_got, k_want) and torch.equal(v_got, v_want)
