"""The compiled decode layers vs the models' Python layers, on random bf16 checkpoints: every step
the engine would give the compiled call is run both ways from the same caches, and the hidden
states and the caches they leave must be the same, bit for bit."""

import pytest
import torch
from completion_kernels.cpu_decode_layers import fusable
from completion_kernels.cpu_extension import bf16_kernels
from completion_kernels.rotary import rope_tables

from service.engine import EngineConfig, LLMEngine, SamplingParams
from tests.support.tiny_checkpoints import build_checkpoint

pytestmark = pytest.mark.slow  # runs the compiled decode layers of four random checkpoints (≈40 s)

PROMPTS = [[5, 6, 7, 8] * 6, [9, 10, 11] * 9 + [12], [13] * 30]


def llama_ways(model, input_ids, positions, meta):
    """The step's input, its Python layers, its compiled layers, and the final norm."""
    x = model.embed_tokens(input_ids)
    cos, sin = rope_tables(x, *model.rope(positions))

    def python():
        h = x
        for layer in model.layers:
            h = layer(h, cos, sin, meta)
        return h

    def compiled():
        return model.compiled_decode_layers(x, cos, sin, meta)

    return x, python, compiled, model.norm


def gpt2_ways(model, input_ids, positions, meta):
    x = model.wte(input_ids) + model.wpe(positions)

    def python():
        h = x
        for i, attn in enumerate(model.attn):
            h = model.block(i)(h, attn, meta)
        return h

    return x, python, lambda: model.compiled_decode_layers(x, meta), model.ln_f


@pytest.mark.parametrize(
    ("family", "overrides", "ways"),
    [
        ("llama_gqa", {"hidden_size": 128, "intermediate_size": 256}, llama_ways),  # 32-wide heads
        ("qwen2", {}, llama_ways),  # q/k/v biases, 16-wide heads, tied head
        ("gpt2", {"n_embd": 128}, gpt2_ways),
        ("gpt2_codeparrot", {}, gpt2_ways),  # attention scaled by layer, upcast
    ],
)
def test_compiled_decode_layers_equal_the_python_layers(tmp_path, family, overrides, ways):
    if bf16_kernels() is None:
        pytest.skip("this CPU has no AVX512-BF16")  # test_cpu_linear fails where it should
    checkpoint = build_checkpoint(tmp_path / family, family, **overrides)
    config = EngineConfig(model_path=checkpoint, num_threads=2, dtype="bfloat16", kv_cache_mb=4)
    engine = LLMEngine(config)
    model = engine.runner.model
    assert model.packed_layer_weights() is not None
    compared = []

    def both_ways(input_ids, positions, meta):
        x, python, compiled, final_norm = ways(model, input_ids, positions, meta)
        if not fusable(x, meta):
            return final_norm(python())
        attention = model.attention_layers()
        before = [(a.k_cache.clone(), a.v_cache.clone()) for a in attention]
        want = python()
        want_caches = [(a.k_cache.clone(), a.v_cache.clone()) for a in attention]
        for a, (k, v) in zip(attention, before, strict=True):
            a.k_cache.copy_(k)
            a.v_cache.copy_(v)
        got = compiled()
        assert torch.equal(got, want)
        for a, (k, v) in zip(attention, want_caches, strict=True):
            assert torch.equal(a.k_cache, k) and torch.equal(a.v_cache, v)
        compared.append(len(meta.cpu_plan.in_place))
        return final_norm(got)

    model.forward = both_ways
    params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    for i, prompt in enumerate(PROMPTS):  # one at a time, then all together
        engine.add_request(f"alone-{i}", prompt, params)
        while engine.has_work():
            engine.step()
    for i, prompt in enumerate(PROMPTS):
        engine.add_request(f"together-{i}", prompt + [14 + i], params)
    while engine.has_work():
        engine.step()
    assert len(compared) >= 3 * 8 and max(compared) == len(PROMPTS)
