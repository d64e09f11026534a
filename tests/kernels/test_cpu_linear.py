"""bf16 linear layers packed for serving vs the fp32 product rounded once, on fresh random weights:
the compiled AVX512-BF16 kernel where this CPU has it, oneDNN's packed product otherwise; on a CPU
with neither (AVX2 only) a bf16 model is served unpacked."""

from pathlib import Path

import pytest
import torch
from completion_kernels.cpu_extension import bf16_kernels
from completion_kernels.cpu_linear import PackedLinear, linear_reference
from torch import nn
from transformers import GPT2Config

from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.models.gpt2 import GPT2
from service.models.packed_linears import can_pack, pack_linears
from tests.support.tiny_checkpoints import build_checkpoint

# Sums in another order may round to the neighbouring bf16 value now and then.
BF16_ULP = {"atol": 1e-2, "rtol": 8e-3}
# oneDNN's bf16 products need AVX512BW/VL/DQ or AVX-NE-CONVERT; without them it refuses to pack.
ONEDNN_BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
needs_onednn_bf16 = pytest.mark.skipif(
    not ONEDNN_BF16, reason="oneDNN has no bf16 path on this CPU (the test below serves unpacked)"
)


def test_this_cpu_runs_the_compiled_bf16_kernel():
    """The kernel is built where the CPU has AVX512-BF16 (without it: oneDNN's packed product, or
    on an AVX2-only CPU torch's own linears); this fails where the kernel was not built for such a
    CPU, so the next test is not moot there."""
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


@needs_onednn_bf16
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


@needs_onednn_bf16
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


@needs_onednn_bf16
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


def test_a_bf16_engine_serves_on_any_cpu_packed_only_where_onednn_multiplies_bf16(tmp_path):
    """`--dtype bfloat16` on an AVX2-only CPU: the engine starts and decodes with torch's own
    linears instead of failing to pack them at start-up."""
    checkpoint = build_checkpoint(tmp_path / "model", "llama_gqa")
    config = EngineConfig(model_path=checkpoint, num_threads=1, dtype="bfloat16", kv_cache_mb=4)
    engine = LLMEngine(config)
    linears = [m for m in engine.runner.model.modules() if isinstance(m, nn.Linear | PackedLinear)]
    assert linears and all(isinstance(m, PackedLinear) == ONEDNN_BF16 for m in linears)
    engine.add_request("r", [1, 2, 3], SamplingParams(max_tokens=4, ignore_eos=True))
    seq = engine.seqs["r"]
    while engine.has_work():
        engine.step()
    assert seq.is_finished and seq.num_output_tokens == 4
