import pytest
import torch

from service.models.int8_weights import (
    dequantize,
    dequantize_state_dict,
    quantization_config,
    quantize,
    quantize_state_dict,
)


def test_each_weight_is_within_half_a_step_of_its_group_scale():
    weight = torch.randn(48, 256) * torch.rand(48, 1) * 0.1  # rows of different magnitudes
    weight[3, 64:128] = 0  # an all-zero group
    weight[5] *= 1e-4 / weight[5].abs().max()  # tiny groups: their scales are float16 subnormals
    q, scale = quantize(weight, group_size=64)
    assert q.dtype == torch.int8 and q.shape == (48, 256)
    assert scale.dtype == torch.float16 and scale.shape == (48, 4)
    assert q.abs().max() == 127  # every group's largest weight uses the whole range
    step = scale.float().repeat_interleave(64, dim=1)
    error = (dequantize(q, scale) - weight).abs()
    assert (error <= step / 2 * (1 + 1e-3)).all()
    assert (dequantize(q, scale)[3, 64:128] == 0).all()


def test_one_group_per_row_is_per_channel():
    weight = torch.randn(8, 96)
    q, scale = quantize(weight, group_size=96)
    per_channel = q.float() * scale.float()  # scale is (8, 1)
    torch.testing.assert_close(dequantize(q, scale), per_channel)


def test_state_dict_round_trip_quantizes_linear_layers_only():
    state_dict = {
        "model.embed_tokens.weight": torch.randn(100, 64),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(64, 64),
        "model.layers.0.mlp.down_proj.weight": torch.randn(64, 128),
        "model.layers.0.input_layernorm.weight": torch.randn(64),
    }
    packed = quantize_state_dict(state_dict, group_size=32, dtype=torch.bfloat16)
    assert packed["model.layers.0.mlp.down_proj.weight"].dtype == torch.int8
    scale = packed["model.layers.0.mlp.down_proj.weight_scale"]
    assert scale.shape == (64, 4) and scale.dtype == torch.float16  # whatever `dtype` is
    assert packed["model.embed_tokens.weight"].dtype == torch.bfloat16
    restored = dequantize_state_dict(packed, quantization_config(32))
    assert restored.keys() == state_dict.keys()
    for name, tensor in state_dict.items():
        torch.testing.assert_close(restored[name].float(), tensor, atol=0.03, rtol=0)


def test_a_group_size_that_does_not_divide_the_columns_is_refused():
    with pytest.raises(ValueError, match="groups of 128"):
        quantize(torch.randn(4, 96), group_size=128)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quant_method": "gptq"}, "quant_method 'gptq'"),
        ({"format": "pack-quantized"}, "format 'pack-quantized'"),
        ({"weights": {"num_bits": 4}}, "symmetric int8"),
        ({"weights": {"symmetric": False}}, "symmetric int8"),
        ({"weights": {"strategy": "block"}}, "per group or per channel"),
        ({"input_activations": {"num_bits": 8}}, "quantized activations"),
    ],
)
def test_a_scheme_the_server_cannot_read_is_refused_with_why(change, message):
    config = quantization_config(32)
    scheme = config["config_groups"]["group_0"]
    if "weights" in change:
        scheme["weights"] |= change["weights"]
    elif "input_activations" in change:
        scheme["input_activations"] = change["input_activations"]
    else:
        config |= change
    with pytest.raises(ValueError, match=message):
        dequantize_state_dict({}, config)
