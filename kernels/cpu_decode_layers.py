"""A decode step's decoder layers in one compiled call (`csrc/cpu_decode_layers.cpp`), for the
Llama family and GPT-2.

The layers' Python forward makes ~20 operator calls a layer, each with its argument parsing,
dispatch and module plumbing; at a decode step's few rows that overhead was about a third of the
step. The compiled call runs the same kernels in the same order, so its hidden states are the
Python forward's, bit for bit (`tests/kernels/test_cpu_decode_layers.py`). It serves steps whose every
sequence the in-place attention kernel takes (decodes, drafts, keystroke tails), on bf16 models
whose projections are packed for our kernel; any other step runs the Python layers.
"""

import torch
from completion_kernels.cpu_extension import cpu_kernels
from completion_kernels.cpu_linear import PackedLinear
from completion_kernels.dispatch import use_cpu_kernel

EMPTY = torch.empty(0)


def fusable(x: torch.Tensor, meta) -> bool:
    """A step the compiled layers can take: flat bf16 rows on the CPU, every sequence's attention
    in place (no prefill chunk), outside autograd."""
    plan = getattr(meta, "cpu_plan", None)
    return (
        plan is not None
        and not plan.runs
        and x.dim() == 2
        and x.dtype == torch.bfloat16
        and use_cpu_kernel(x)
        and not torch.is_grad_enabled()
    )


def packed(*projections) -> list[torch.Tensor] | None:
    """Each projection's packed weight and fp32 bias (empty: none), or None where one is not
    packed for our kernel (not yet packed, or oneDNN's)."""
    if not all(isinstance(p, PackedLinear) and p.kernels is not None for p in projections):
        return None
    return [t for p in projections for t in (p.packed, EMPTY if p.bias is None else p.bias)]


def gpt2_decode_layers(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    caches: list[torch.Tensor],
    scales: list[float],
    meta,
    num_heads: int,
    eps: float,
    approximate: str,
) -> torch.Tensor:
    """GPT-2's hidden states after the last layer (before ln_f), as its Python layers.

    weights: 12 a layer (see the C++); caches: each layer's K then V cache; approximate:
    `torch.nn.functional.gelu`'s."""
    return cpu_kernels().gpt2_decode_layers(
        x,
        weights,
        caches,
        scales,
        meta.slot_mapping,
        meta.block_tables,
        meta.seq_lens,
        meta.cu_seqlens_q,
        meta.cpu_plan.in_place,
        num_heads,
        eps,
        approximate,
    )


def llama_decode_layers(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    caches: list[torch.Tensor],
    cos: torch.Tensor,
    sin: torch.Tensor,
    meta,
    num_heads: int,
    num_kv_heads: int,
    eps: float,
    scale: float,
) -> torch.Tensor:
    """The hidden states after the last layer (before the final norm), as the Python layers.

    weights: 10 a layer (see the C++); caches: each layer's K then V cache."""
    return cpu_kernels().llama_decode_layers(
        x,
        weights,
        caches,
        cos,
        sin,
        meta.slot_mapping,
        meta.block_tables,
        meta.seq_lens,
        meta.cu_seqlens_q,
        meta.cpu_plan.in_place,
        num_heads,
        num_kv_heads,
        eps,
        scale,
    )
