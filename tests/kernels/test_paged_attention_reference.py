"""The torch reference (the definition the Triton and CPU kernels must equal) against plain
causal attention, whether a sequence's blocks are adjacent in the cache or scattered."""

import pytest
import torch
import torch.nn.functional as F
from completion_kernels.paged_attention_reference import paged_attention_reference

BLOCK, H, H_KV, D = 4, 4, 2, 8


def dense_attention(q, k, v, scale):
    """q: [n, H, D], the last n of S positions; k, v: [S, H_KV, D]."""
    n, seq_len = q.shape[0], k.shape[0]
    mask = torch.arange(seq_len)[None, :] <= torch.arange(seq_len - n, seq_len)[:, None]
    k, v = (t.repeat_interleave(H // H_KV, dim=1).transpose(0, 1) for t in (k, v))
    return F.scaled_dot_product_attention(
        q.transpose(0, 1), k, v, attn_mask=mask, scale=scale
    ).transpose(0, 1)


@pytest.mark.parametrize("layout", ["adjacent", "scattered"])
def test_mixed_step_matches_dense_attention(layout):
    g = torch.Generator().manual_seed(3)
    seq_lens, n_queries = [9, 1, 13, 4], [1, 1, 5, 4]  # decodes, a chunk after a prefix, a prompt
    n_blocks = [-(-s // BLOCK) for s in seq_lens]
    order = torch.arange(sum(n_blocks))
    if layout == "scattered":
        order = torch.randperm(len(order), generator=g)
    tables, start = [], 0
    for n in n_blocks:
        tables.append(order[start : start + n].tolist() + [-1] * (max(n_blocks) - n))
        start += n
    k_cache = torch.randn(len(order) + 2, BLOCK, H_KV, D, generator=g)
    v_cache = torch.randn(len(order) + 2, BLOCK, H_KV, D, generator=g)
    q = torch.randn(sum(n_queries), H, D, generator=g)
    cu = [0]
    for n in n_queries:
        cu.append(cu[-1] + n)
    out = paged_attention_reference(
        q,
        k_cache,
        v_cache,
        torch.tensor(tables, dtype=torch.int32),
        torch.tensor(seq_lens, dtype=torch.int32),
        torch.tensor(cu, dtype=torch.int32),
        0.3,
    )
    for i, seq_len in enumerate(seq_lens):
        rows = [b for b in tables[i] if b >= 0]
        k = k_cache[rows].flatten(0, 1)[:seq_len]
        v = v_cache[rows].flatten(0, 1)[:seq_len]
        expected = dense_attention(q[cu[i] : cu[i + 1]], k, v, 0.3)
        torch.testing.assert_close(out[cu[i] : cu[i + 1]], expected, atol=1e-5, rtol=0)
