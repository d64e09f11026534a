"""Linear layers with oneDNN-packed bf16 weights vs `nn.Linear`, on fresh random weights (the
same oneDNN kernel: equal here, within bf16 rounding on a CPU whose plain path differs)."""

import pytest
import torch
from torch import nn
from transformers import GPT2Config

from kernels.cpu_linear import PackedLinear, can_pack, pack_linears
from service.models.gpt2 import GPT2


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 5, 300])
def test_packed_linear_equals_linear(rows, bias):
    torch.manual_seed(rows)
    linear = nn.Linear(96, 200, bias=bias).to(torch.bfloat16)
    x = torch.randn(2, rows, 96, dtype=torch.bfloat16)
    with torch.inference_mode():
        packed = PackedLinear(linear.weight, linear.bias)
        torch.testing.assert_close(packed(x), linear(x), atol=1e-2, rtol=1e-2)


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
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)
