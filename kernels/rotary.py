"""Rotary position embedding (RoPE) of the Llama family: the torch reference, and on the CPU a
compiled kernel (`csrc/rotary_embedding.cpp`) that rotates q and k in place in one call."""

import torch

from kernels.cpu_extension import cpu_kernels
from kernels.dispatch import use_cpu_kernel


def apply_rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [..., H, D]; cos, sin: [..., D/2] of each token, shared by the heads. Rotates the pairs
    (x_i, x_{i+D/2}), transformers' `rotate_half` convention, without building rotate_half(x),
    in x's dtype as transformers does."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype).unsqueeze(-2), sin.to(x.dtype).unsqueeze(-2)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rope_reference`'s contract (cos, sin in fp32). The engine's flat [N, H, D] batches
    on the CPU are rotated in place by the compiled kernel, in fp32 with one rounding."""
    if x.dim() == 3 and use_cpu_kernel(x) and (kernels := cpu_kernels()) is not None:
        kernels.rotary_embedding_(x, cos, sin)
        return x
    return apply_rope_reference(x, cos, sin)
