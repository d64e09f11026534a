"""Rotary position embedding (RoPE) of the Llama family: the torch reference, and on the CPU a
compiled kernel (`csrc/rotary_embedding.cpp`) that rotates q and k in place in one call."""

import torch
from completion_kernels.cpu_extension import cpu_kernels
from completion_kernels.dispatch import use_cpu_kernel


def apply_rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [..., H, D]; cos, sin: [..., D/2] of each token, shared by the heads. Rotates the pairs
    (x_i, x_{i+D/2}), transformers' `rotate_half` convention, without building rotate_half(x),
    in x's dtype as transformers does."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype).unsqueeze(-2), sin.to(x.dtype).unsqueeze(-2)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rope_reference`'s contract (cos, sin as `rope_tables` gives them). The engine's flat
    [N, H, D] batches on the CPU are rotated in place by the compiled kernel, in fp32 with one
    rounding."""
    if (kernels := _compiled_for(x, flat_dims=3)) is not None:
        kernels.rotary_embedding_(x, cos, sin)
        return x
    return apply_rope_reference(x, cos, sin)


def rope_tables(
    hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 cos and sin in the dtype `apply_rope` will use for these hidden states' heads: fp32
    for the compiled kernel, else the model's, cast here once a step rather than in every layer."""
    if _compiled_for(hidden, flat_dims=2) is not None:
        return cos, sin
    return cos.to(hidden.dtype), sin.to(hidden.dtype)


def _compiled_for(x: torch.Tensor, flat_dims: int):
    """The compiled kernels where they serve x: the engine's flat batches on the CPU."""
    return cpu_kernels() if x.dim() == flat_dims and use_cpu_kernel(x) else None
