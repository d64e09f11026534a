"""RMSNorm of the Llama family: the torch reference (transformers' arithmetic), and on the CPU a
compiled kernel (`csrc/rms_norm.cpp`) doing the same in one call."""

import torch
import torch.nn.functional as F
from completion_kernels.cpu_extension import cpu_kernels
from completion_kernels.dispatch import use_cpu_kernel


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalise in fp32 and cast back before the weight, as transformers does."""
    normed = F.rms_norm(x.float(), weight.shape, eps=eps)
    return weight * normed.to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`rms_norm_reference`'s contract; on the CPU, one compiled call (the reference is four
    operators, each starting the thread team for a decode step's one row)."""
    usable = use_cpu_kernel(x) and x.is_contiguous() and not torch.is_grad_enabled()
    if usable and weight.dtype == x.dtype and (kernels := cpu_kernels()) is not None:
        return kernels.rms_norm(x, weight, eps)
    return rms_norm_reference(x, weight, eps)
