"""Suite-wide setup. Without CUDA, Triton kernels run in its interpreter; triton reads the
switch when first imported, so it must be set before any test module imports a kernel."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
