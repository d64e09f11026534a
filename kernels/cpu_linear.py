"""Linear layers whose bf16 weights are packed once for oneDNN, for serving on the CPU.

torch's bf16 `F.linear` on the CPU reorders the weight into oneDNN's blocked layout at every
call. A decode step's products are small (one row per sequence), and that reorder costs more
than their arithmetic: on the benchmark model, the four products of a layer at one row took
115 µs with it and 74 µs with the weights packed ahead (hot caches, 2 threads), and a decode step
7.5 → 6.8 ms. Packing once at load, as inductor's CPU backend does when it freezes a model,
removes it. The product is the same oneDNN kernel, so the results are the same.
"""

import torch
from torch import nn


class PackedLinear(nn.Module):
    """`nn.Linear`'s forward over a weight packed for oneDNN; serving only (no gradients)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # The batch-size hint picks a layout; 1 (a decode step) measured no slower at 1,000 rows.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)


def can_pack(model: nn.Module) -> bool:
    weight = next(model.parameters())
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
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
