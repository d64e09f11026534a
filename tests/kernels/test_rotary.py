"""The compiled CPU rotary embedding vs the torch reference, on fresh random q/k sliced from a
fused projection as the Llama model passes them."""

import pytest
import torch
from completion_kernels.cpu_extension import cpu_kernels
from completion_kernels.rotary import apply_rope, apply_rope_reference

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [32, 64, 128])
def test_compiled_rotary_equals_the_reference(head_dim, dtype):
    assert cpu_kernels() is not None
    gen = torch.Generator().manual_seed(head_dim)
    tokens, qk_heads, v_heads = 70, 6, 2  # more tokens than one parallel grain
    fused = torch.randn(tokens, qk_heads + v_heads, head_dim, generator=gen).to(dtype)
    angles = torch.rand(tokens, head_dim // 2, generator=gen) * 100
    cos, sin = angles.cos(), angles.sin()
    want = apply_rope_reference(fused[:, :qk_heads].float(), cos, sin)
    untouched = fused[:, qk_heads:].clone()
    got = apply_rope(fused[:, :qk_heads], cos, sin)
    assert got.data_ptr() == fused.data_ptr()  # rotated in place, in the fused tensor
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)
    assert torch.equal(fused[:, qk_heads:], untouched)


def test_dense_batches_take_the_reference():
    """[B, T, H, D] (training, the model without a cache) is not the kernel's layout."""
    x = torch.randn(2, 5, 4, 32)
    cos, sin = torch.rand(5, 16), torch.rand(5, 16)
    got = apply_rope(x, cos, sin)
    assert got.data_ptr() != x.data_ptr()
    torch.testing.assert_close(got, apply_rope_reference(x, cos, sin))
