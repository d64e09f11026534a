"""The attention step shared by every model family.

Serving packs the tokens of many sequences into one flat batch `[N, H, D]` and keeps K/V in a
paged cache (see `kernels/paged_attention.py`); training and the reference path use ordinary
dense causal attention on `[B, T, H, D]`. `PagedAttention` does either, depending on whether
`AttentionMetadata` is given.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from completion_kernels.cpu_paged_attention import CpuAttentionPlan
from completion_kernels.paged_attention import paged_attention, store_kv
from torch import nn


@dataclass
class AttentionMetadata:
    """Where each packed token's K/V goes and which cache blocks each sequence reads.

    slot_mapping: [N] int64, cache slot (block * block_size + offset) of each token, < 0 = skip.
    block_tables: [B, max_blocks] int32, -1 padded.
    seq_lens: [B] int32, tokens of each sequence in the cache after this step.
    cu_seqlens_q: [B + 1] int32, sequence i owns query tokens cu_seqlens_q[i]:cu_seqlens_q[i+1].
    max_seqlen_q: the largest number of query tokens of one sequence in this step.
    cpu_plan: which CPU path attends each sequence, made once a step for every layer
        (`completion_kernels.cpu_paged_attention.plan_sequences`); None where another kernel runs.
    """

    slot_mapping: torch.Tensor
    block_tables: torch.Tensor
    seq_lens: torch.Tensor
    cu_seqlens_q: torch.Tensor
    max_seqlen_q: int
    cpu_plan: CpuAttentionPlan | None = None


class PagedAttention(nn.Module):
    """Causal attention of one layer; owns that layer's slice of the paged KV cache.

    `k_cache` / `v_cache` (`[num_blocks, block_size, num_kv_heads, head_dim]`) stay empty until
    the engine's model runner assigns them. They are plain attributes, not buffers, so they are
    never part of a state dict.
    """

    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        scale: float,
        upcast: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        # Dense path: attention math in fp32 (GPT-2's reorder_and_upcast_attn); the paged kernels
        # always accumulate in fp32.
        self.upcast = upcast
        self.dropout = dropout
        self.k_cache = torch.empty(0)
        self.v_cache = torch.empty(0)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        meta: AttentionMetadata | None = None,
    ) -> torch.Tensor:
        """q: [..., H, D]; k, v: [..., H_kv, D]. Flat [N, ...] with meta, [B, T, ...] without."""
        if meta is None:
            return self._dense(q, k, v)
        store_kv(k, v, self.k_cache, self.v_cache, meta.slot_mapping)
        return paged_attention(
            q,
            self.k_cache,
            self.v_cache,
            meta.block_tables,
            meta.seq_lens,
            meta.cu_seqlens_q,
            self.scale,
            meta.cpu_plan,
        )

    def _dense(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        dtype = q.dtype
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
        if self.upcast:
            q, k, v = q.float(), k.float(), v.float()
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=True,
            scale=self.scale,
            enable_gqa=self.num_heads != self.num_kv_heads,
        )
        return out.transpose(1, 2).to(dtype)
