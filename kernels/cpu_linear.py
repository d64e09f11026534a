"""Linear layers whose bf16 weights are packed once, for serving on the CPU.

A decode step's products are small (one row per sequence), so their fixed costs decide them:
- torch's bf16 `F.linear` reorders the weight into oneDNN's blocked layout at every call. Packed
  once at load (as inductor's CPU backend does when it freezes a model), the four products of a
  benchmark-model layer at one row went 115 → 74 µs.
- oneDNN's product itself still spends ≈20 µs a call before any arithmetic. On CPUs with
  AVX512-BF16 the weight is packed for our own kernel instead (`csrc/cpu_linear.cpp`), which takes
  the same layer's four products at one row in ≈30 µs (3-5x less per product) and keeps level
  with oneDNN up to 1,024 rows, so prefill uses it too.
Both accumulate in fp32 and round to bf16 once: `linear_reference` is what they must equal.
"""

import torch
import torch.nn.functional as F
from completion_kernels.cpu_extension import bf16_kernels
from torch import nn


def linear_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The product in fp32, rounded to x's dtype once."""
    bias = None if bias is None else bias.float()
    return F.linear(x.float(), weight.float(), bias).to(x.dtype)


class PackedLinear(nn.Module):
    """`nn.Linear`'s forward over a bf16 weight packed once; serving only (no gradients)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        weight = weight.detach()
        self.kernels = bf16_kernels() if self.in_features % 2 == 0 else None
        if self.kernels is not None:
            self.packed = self.kernels.pack_linear_weight(weight)
            self.bias = None if bias is None else bias.detach().float()  # added before rounding
        else:
            # The batch-size hint picks a layout; 1 (a decode step) measured no slower at 1,000 rows.
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
            self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels is not None:
            return self.kernels.linear_packed(
                x.contiguous(), self.packed, self.bias, self.out_features
            )
        rows = x.reshape(-1, self.in_features)
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)
