"""The compiled CPU RMSNorm vs transformers' arithmetic (the torch reference), on fresh random
inputs; and the paths that must take the reference."""

import pytest
import torch
from completion_kernels.cpu_extension import cpu_kernels
from completion_kernels.rms_norm import rms_norm, rms_norm_reference
from transformers.models.llama.modeling_llama import LlamaRMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 256), (70, 96), (2, 5, 64)])
def test_compiled_rms_norm_equals_transformers(shape, dtype):
    assert cpu_kernels() is not None
    gen = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(shape, generator=gen) * 3).to(dtype)
    hf = LlamaRMSNorm(shape[-1], eps=1e-6).to(dtype)
    with torch.no_grad():
        hf.weight.copy_(torch.randn(shape[-1], generator=gen))
        want = hf(x)
        got = rms_norm(x, hf.weight, 1e-6)
    assert got.dtype == dtype and got.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: at most an ulp where sums round apart
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_training_and_strided_inputs_take_the_reference():
    x, weight = torch.randn(4, 64, requires_grad=True), torch.randn(64, requires_grad=True)
    rms_norm(x, weight, 1e-6).sum().backward()  # autograd flows: the reference ran
    assert x.grad is not None and weight.grad is not None
    strided = torch.randn(64, 4).t()
    with torch.no_grad():
        torch.testing.assert_close(
            rms_norm(strided, weight.detach(), 1e-6),
            rms_norm_reference(strided, weight.detach(), 1e-6),
        )
