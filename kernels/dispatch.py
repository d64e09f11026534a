"""Choose the kernel for a tensor's device: Triton on CUDA, our CPU kernels on the CPU.

`KERNELS=triton` forces the Triton kernels (with `TRITON_INTERPRET=1` they run on the CPU),
`KERNELS=reference` forces the torch references (the definitions the kernels are tested against).
"""

import os

import torch


def kernel_choice() -> str:
    return os.environ.get("KERNELS", "auto")


def use_triton(tensor: torch.Tensor) -> bool:
    choice = kernel_choice()
    return choice == "triton" or (choice == "auto" and tensor.is_cuda)


def use_cpu_kernel(tensor: torch.Tensor) -> bool:
    return kernel_choice() == "auto" and tensor.device.type == "cpu"
