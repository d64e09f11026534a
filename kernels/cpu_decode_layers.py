"""A decode step's decoder layers in one compiled call (`csrc/cpu_decode_layers.cpp`), for the
Llama family and GPT-2.

The layers' Python forward makes ~20 operator calls a layer, each with its argument parsing,
dispatch and module plumbing; at a decode step's few rows that overhead was about a third of the
step. The compiled call runs the same kernels in the same order, so its hidden states are the
Python forward's, bit for bit (`tests/test_cpu_decode_layers.py`). It serves steps whose every
sequence the in-place attention kernel takes (decodes, drafts, keystroke tails), on bf16 models
whose projections are packed for our kernel; any other step runs the Python layers.
"""

import torch
from completion_kernels.cpu_extension import cpu_kernels
from completion_kernels.cpu_linear import PackedLinear
from completion_kernels.dispatch import use_cpu_kernel
from torch import nn

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


def llama_layer_weights(layers: nn.ModuleList) -> list[torch.Tensor] | None:
    """The Llama call's 10 weights a layer (see the C++), or None where it cannot run."""
    weights = []
    for layer in layers:
        attn = packed(layer.self_attn.qkv_proj, layer.self_attn.o_proj)
        mlp = packed(layer.mlp.gate_up_proj, layer.mlp.down_proj)
        if attn is None or mlp is None:
            return None
        weights += [
            layer.input_layernorm.weight,
            *attn,
            layer.post_attention_layernorm.weight,
            *mlp,
        ]
    return weights


# GPT-2 activations the compiled call runs, as `torch.nn.functional.gelu`'s `approximate`.
GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "none"}


def gpt2_layer_weights(model: nn.Module) -> list[torch.Tensor] | None:
    """The GPT-2 call's 12 weights a layer (see the C++), or None where it cannot run."""
    if model.config.activation_function not in GELU:
        return None
    weights = []
    for i in range(model.num_layers):
        block = model.block(i)
        attn = packed(block.attn.c_attn, block.attn.c_proj)
        mlp = packed(block.mlp.c_fc, block.mlp.c_proj)
        if attn is None or mlp is None:
            return None
        ln_1, ln_2 = (block.ln_1.weight, block.ln_1.bias), (block.ln_2.weight, block.ln_2.bias)
        weights += [*ln_1, *attn, *ln_2, *mlp]
    return weights


def caches_of(attention_layers) -> list[torch.Tensor]:
    return [c for a in attention_layers for c in (a.k_cache, a.v_cache)]


def gpt2_decode_layers(x: torch.Tensor, weights: list[torch.Tensor], model, meta) -> torch.Tensor:
    """GPT-2's hidden states after the last layer (before ln_f), as its Python layers."""
    return cpu_kernels().gpt2_decode_layers(
        x,
        weights,
        caches_of(model.attn),
        [a.scale for a in model.attn],
        meta.slot_mapping,
        meta.block_tables,
        meta.seq_lens,
        meta.cu_seqlens_q,
        meta.cpu_plan.in_place,
        model.config.n_head,
        model.config.layer_norm_epsilon,
        GELU[model.config.activation_function],
    )


def llama_decode_layers(
    x: torch.Tensor, weights: list[torch.Tensor], layers: nn.ModuleList, cos, sin, meta
) -> torch.Tensor:
    """The hidden states after the last layer (before the final norm), as the Python layers."""
    attn = layers[0].self_attn
    return cpu_kernels().llama_decode_layers(
        x,
        weights,
        caches_of(layer.self_attn.attn for layer in layers),
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
