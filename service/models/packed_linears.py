"""Packing a model's linear layers for serving on the CPU (`completion_kernels.cpu_linear`).

The model side of the packing: which modules are linear layers, and the head tied to the token
embedding, are the model's to know; the kernel module only packs a weight.
"""

import torch
from completion_kernels.cpu_linear import PackedLinear
from torch import nn


def can_pack(model: nn.Module) -> bool:
    """bf16 weights on a CPU where oneDNN multiplies bf16 (AVX512BW/VL/DQ or AVX-NE-CONVERT; it
    serves the widths our kernel does not take). Elsewhere, an AVX2-only CPU given `--dtype
    bfloat16`, packing would fail and the model keeps torch's own (slow, emulated) linears."""
    weight = next(model.parameters())
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def pack_linears(model: nn.Module) -> int:
    """Replace each `nn.Linear` of the model with a `PackedLinear`, and give a head tied to the
    token embedding (`lm_head` None) a packed copy of it; returns how many were packed."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, PackedLinear(child.weight, child.bias))
                count += 1
    if getattr(model, "lm_head", False) is None:  # the packed copy costs vocab x width once more
        model.lm_head = PackedLinear(model.get_input_embeddings().weight)
        count += 1
    return count
