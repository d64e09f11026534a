"""bf16 linear layers packed for serving vs the fp32 product rounded once, on fresh random weights:
the compiled AVX512-BF16 kernel where this CPU has it, oneDNN's packed product otherwise."""

from pathlib import Path

import pytest
import torch
from completion_kernels.cpu_extension import bf16_kernels
from completion_kernels.cpu_linear import PackedLinear, linear_reference
from torch import nn
from transformers import GPT2Config

from service.models.gpt2 import GPT2
from service.models.packed_linears import can_pack, pack_linears

# Sums in another order may round to the neighbouring bf16 value now and then.
BF16_ULP = {"atol": 1e-2, "rtol": 8e-3}


def test_this_cpu_runs_the_compiled_bf16_kernel():
    """The machines this project serves and tests on have AVX512-BF16 (a CPU without it falls back
    to oneDNN); this fails where the kernel was not built for it, so the next test is not moot."""
    flags = Path("/proc/cpuinfo").read_text()
    assert (bf16_kernels() is not None) == ("avx512_bf16" in flags)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(
    ("rows", "n", "k"), [(1, 200, 96), (3, 8192, 256), (7, 37, 18), (130, 300, 64)]
)
def test_packed_kernel_equals_the_fp32_product_rounded_once(rows, n, k, bias):
    """Rows past one 64-row work item and not a multiple of the 4-row tile; outputs not a multiple
    of the 16-output block; a wide head."""
    kernels = bf16_kernels()
    if kernels is None:
        pytest.skip("this CPU has no AVX512-BF16")  # the oneDNN path, tested below, serves there
    torch.manual_seed(rows * n)
    weight = torch.randn(n, k, dtype=torch.bfloat16)
    b = torch.randn(n, dtype=torch.bfloat16) if bias else None
    x = torch.randn(2, rows, k, dtype=torch.bfloat16)
    packed = kernels.pack_linear_weight(weight)
    got = kernels.linear_packed(x, packed, None if b is None else b.float(), n)
    assert got.shape == (2, rows, n)
    torch.testing.assert_close(got, linear_reference(x, weight, b), **BF16_ULP)


@pytest.mark.parametrize("in_features", [96, 95])  # odd: oneDNN, as the kernel takes pairs
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 5, 300])
def test_packed_linear_equals_linear(rows, bias, in_features):
    torch.manual_seed(rows)
    linear = nn.Linear(in_features, 200, bias=bias).to(torch.bfloat16)
    x = torch.randn(2, rows, in_features, dtype=torch.bfloat16)
    with torch.inference_mode():
        packed = PackedLinear(linear.weight, linear.bias)
        want = linear_reference(x, linear.weight, linear.bias)
        torch.testing.assert_close(packed(x), want, **BF16_ULP)


def test_pack_linears_replaces_every_linear_and_keeps_the_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Sequential(nn.Linear(64, 8)))
    model = model.to(torch.bfloat16).eval()
    assert can_pack(model) and not can_pack(nn.Linear(2, 2))  # bf16 weights only
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    with torch.inference_mode():
        want = model(x)
        assert pack_linears(model) == 2
        got = model(x)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    torch.testing.assert_close(got, want, **BF16_ULP)


def test_a_tied_head_gets_a_packed_copy_of_the_embedding():
    torch.manual_seed(1)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300, n_positions=64)
    model = GPT2(config).to(torch.bfloat16).eval()
    hidden = torch.randn(4, 32, dtype=torch.bfloat16)
    with torch.inference_mode():
        want = model.compute_logits(hidden)
        assert pack_linears(model) == 5  # c_attn, attention c_proj, c_fc, MLP c_proj, the head
        got = model.compute_logits(hidden)
    assert isinstance(model.lm_head, PackedLinear)
    torch.testing.assert_close(got, want, **BF16_ULP)
