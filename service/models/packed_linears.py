"""Packing a model's linear layers for serving on the CPU (`completion_kernels.cpu_linear`).

The model side of the packing: which modules are linear layers, and the head tied to the token
embedding, are the model's to know; the kernel module only packs a weight.
"""

import torch
from completion_kernels.cpu_extension import bf16_kernels
from completion_kernels.cpu_linear import PackedLinear
from torch import nn


def can_pack(model: nn.Module) -> bool:
    weight = next(model.parameters())
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.bfloat16
        and (bf16_kernels() is not None or torch.backends.mkldnn.is_available())
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
