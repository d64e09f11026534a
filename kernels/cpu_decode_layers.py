"""A Llama-family decode step's decoder layers in one compiled call (`csrc/cpu_decode_layers.cpp`).

The layers' Python forward makes ~20 operator calls a layer, each with its argument parsing,
dispatch and module plumbing; at a decode step's few rows that overhead was about a third of the
step. The compiled call runs the same kernels in the same order, so its hidden states are the
Python forward's, bit for bit (`tests/test_cpu_decode_layers.py`). It serves steps whose every
sequence the in-place attention kernel takes (decodes, drafts, keystroke tails), on bf16 models
whose projections are packed for our kernel; any other step runs the Python layers.
"""

import torch
from torch import nn

from kernels.cpu_extension import cpu_kernels
from kernels.cpu_linear import PackedLinear
from kernels.dispatch import use_cpu_kernel

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


def layer_weights(layers: nn.ModuleList) -> list[torch.Tensor] | None:
    """The compiled call's 10 weights a layer, or None where a projection is not packed for our
    kernel (not yet packed, or oneDNN's)."""
    weights = []
    for layer in layers:
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
        if not all(isinstance(p, PackedLinear) and p.kernels is not None for p in projections):
            return None
        weights.append(layer.input_layernorm.weight)
        for p in projections[:2]:
            weights += [p.packed, EMPTY if p.bias is None else p.bias]
        weights.append(layer.post_attention_layernorm.weight)
        for p in projections[2:]:
            weights += [p.packed, EMPTY if p.bias is None else p.bias]
    return weights


def llama_decode_layers(
    x: torch.Tensor, weights: list[torch.Tensor], layers: nn.ModuleList, cos, sin, meta
) -> torch.Tensor:
    """The hidden states after the last layer (before the final norm), as the Python layers."""
    attn = layers[0].self_attn
    caches = [
        c for layer in layers for c in (layer.self_attn.attn.k_cache, layer.self_attn.attn.v_cache)
    ]
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
        attn.num_heads,
        attn.num_kv_heads,
        layers[0].input_layernorm.eps,
        attn.attn.scale,
    )
