"""8-bit weights: a checkpoint's linear layers as int8 with a float16 scale per group of columns.

The format is compressed-tensors' "naive-quantized" W8A16 scheme, so `transformers` loads it
(with the `compressed-tensors` package installed) as it loads any quantized checkpoint:
config.json carries a `quantization_config`, and for each quantized layer model.safetensors holds
`<layer>.weight` (int8, out × in) and `<layer>.weight_scale` (float16, out × in / group_size).
Symmetric: w ≈ q · scale, q in [-127, 127], one scale per `group_size` consecutive input columns.
Embeddings and norms stay as they are. At 8 bits a 30 MB checkpoint holds about twice the
parameters it holds in float16; the server dequantizes at load and computes in its own dtype.
"""

import torch

SCALE = "_scale"  # `<layer>.weight` + SCALE names its scales


def quantizable(name: str, tensor: torch.Tensor) -> bool:
    """The weight of one of a Llama-style model's linear layers (q/k/v/o, gate/up/down)."""
    return name.endswith("_proj.weight") and tensor.dim() == 2


def quantize(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, float16 scales) with weight ≈ q * scale repeated over each group."""
    rows, cols = weight.shape
    if cols % group_size:
        raise ValueError(
            f"a layer with {cols} input columns does not split in groups of {group_size}"
        )
    groups = weight.float().reshape(rows, cols // group_size, group_size)
    # The scale is a float16 before it divides, so that q · scale is what a loader computes. It
    # must not round below absmax / 127 (small groups' scales are float16 subnormals, as coarse as
    # 2^-24), or the largest weights would clip at ±127; and it must be > 0 for all-zero groups.
    exact = groups.abs().amax(-1) / 127
    scale = exact.half().clamp(min=2**-24)
    scale = torch.where(scale.float() < exact, torch.nextafter(scale, scale.new_tensor(1)), scale)
    q = torch.round(groups / scale.float()[..., None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(rows, cols), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight of `quantize`'s output (any number of groups, one being per channel)."""
    rows, cols = q.shape
    groups = q.float().reshape(rows, scale.shape[1], -1)
    return (groups * scale.float()[..., None]).reshape(rows, cols)


def quantize_state_dict(
    state_dict: dict[str, torch.Tensor], group_size: int, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The linear layers quantized (their scales float16), every other tensor in `dtype`."""
    out = {}
    for name, tensor in state_dict.items():
        if quantizable(name, tensor):
            out[name], out[name + SCALE] = quantize(tensor, group_size)
        else:
            out[name] = tensor.to(dtype)
    return out


def quantization_config(group_size: int) -> dict:
    """config.json's `quantization_config` for `quantize_state_dict`'s tensors."""
    weights = {
        "num_bits": 8,
        "type": "int",
        "symmetric": True,
        "strategy": "group",
        "group_size": group_size,
        "dynamic": False,
        "observer": "minmax",
    }
    scheme = {"targets": ["Linear"], "weights": weights, "format": "naive-quantized"}
    return {
        "quant_method": "compressed-tensors",
        "format": "naive-quantized",
        "quantization_status": "compressed",
        "config_groups": {"group_0": scheme},
        "ignore": ["lm_head"],
    }


def check_supported(config: dict) -> None:
    """Refuse, saying why, a `quantization_config` that `dequantize_state_dict` cannot read."""
    method, fmt = config.get("quant_method"), config.get("format")
    if method != "compressed-tensors" or fmt not in ("naive-quantized", "int-quantized"):
        raise ValueError(
            f"unsupported quantization_config (quant_method {method!r}, format {fmt!r}): "
            "the server reads compressed-tensors naive-quantized int8 weights only"
        )
    for name, scheme in config.get("config_groups", {}).items():
        w = scheme.get("weights") or {}
        plain_int8 = w.get("num_bits") == 8 and w.get("type") == "int" and w.get("symmetric")
        if not plain_int8 or w.get("strategy") not in ("group", "channel"):
            raise ValueError(
                f"unsupported quantization scheme {name!r}: weights must be symmetric int8 "
                f"per group or per channel, got {w}"
            )
        if scheme.get("input_activations"):
            raise ValueError(f"unsupported quantization scheme {name!r}: quantized activations")


def dequantize_state_dict(
    state_dict: dict[str, torch.Tensor], config: dict
) -> dict[str, torch.Tensor]:
    """`state_dict` with every quantized weight as float32, its scales dropped."""
    check_supported(config)
    out = {name: t for name, t in state_dict.items() if not name.endswith("weight" + SCALE)}
    for name, scale in state_dict.items():
        if name.endswith("weight" + SCALE):
            weight = name.removesuffix(SCALE)
            out[weight] = dequantize(state_dict[weight], scale)
    return out
