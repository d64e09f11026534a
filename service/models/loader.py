"""Build one of our model implementations from a Hugging Face checkpoint directory."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig

from service.models.gpt2 import GPT2
from service.models.gpt_bigcode import GPTBigCode
from service.models.int8_weights import dequantize_state_dict
from service.models.llama import Llama

MODEL_FAMILIES: dict[str, type[nn.Module]] = {
    "gpt2": GPT2,
    "gpt_bigcode": GPTBigCode,
    "llama": Llama,
    "qwen2": Llama,
}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors`, or of the shards `model.safetensors.index.json` lists."""
    single = path / "model.safetensors"
    if single.exists():
        return load_file(single)
    index = path / "model.safetensors.index.json"
    if not index.exists():
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path}")
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    state_dict = {}
    for shard in shards:
        state_dict.update(load_file(path / shard))
    return state_dict


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """The checkpoint at `path` as our model for its `model_type`, in eval mode."""
    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    family = MODEL_FAMILIES.get(config.model_type)
    if family is None:
        raise ValueError(
            f"unsupported model_type {config.model_type!r} in {path / 'config.json'}; "
            f"supported: {', '.join(MODEL_FAMILIES)}"
        )
    with torch.device(device):
        model = family(config)
    model.to(dtype)
    state_dict = read_state_dict(path)
    if quantization := getattr(config, "quantization_config", None):
        state_dict = dequantize_state_dict(state_dict, quantization)
    model.load_hf_state_dict(state_dict)
    return model.eval()
