"""Choose Triton or the torch reference for a tensor's device.

`KERNELS=triton` forces the Triton kernels (with `TRITON_INTERPRET=1` they run on the CPU),
`KERNELS=reference` forces the torch references; unset, Triton runs on CUDA only.
"""

import os

import torch


def use_triton(tensor: torch.Tensor) -> bool:
    choice = os.environ.get("KERNELS", "auto")
    if choice == "reference":
        return False
    if choice == "triton":
        return True
    return tensor.is_cuda
