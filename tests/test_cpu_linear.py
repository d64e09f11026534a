"""Linear layers with oneDNN-packed bf16 weights vs `nn.Linear`, on fresh random weights (the
same oneDNN kernel: equal here, within bf16 rounding on a CPU whose plain path differs)."""

import pytest
import torch
from torch import nn

from kernels.cpu_linear import PackedLinear, can_pack, pack_linears


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 5, 300])
def test_packed_linear_equals_linear(rows, bias):
    torch.manual_seed(rows)
    linear = nn.Linear(96, 200, bias=bias).to(torch.bfloat16)
    x = torch.randn(2, rows, 96, dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(PackedLinear(linear)(x), linear(x), atol=1e-2, rtol=1e-2)


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
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)
