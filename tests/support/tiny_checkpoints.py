"""Tiny random Hugging Face checkpoints of every supported family, for tests.

`build_checkpoint(tmp_path, "gpt2")` writes a complete checkpoint directory (config.json,
model.safetensors, generation_config.json, tokenizer.json + tokenizer_config.json +
special_tokens_map.json) that both `transformers` and `service.models.load_model` read. The
tokenizer is a real byte-level BPE trained on a few KB of the standard library's Python source,
with the StarCoder FIM sentinels as added special tokens.

Note: for `qwen2` checkpoints `transformers.AutoTokenizer` picks `Qwen2Tokenizer` by model type,
whose pre-tokenizer splits differently from tokenizer.json; `tokenizers.Tokenizer.from_file`
(and AutoTokenizer on the other families) encode exactly as trained.
"""

import functools
import inspect
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTBigCodeConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from training.data.config import TokenizerConfig
from training.data.tokenizer import EOT, build_bpe, save_pretrained

BPE_VOCAB_SIZE = 1024

# The families the tests cover; values are (config class, config keyword arguments).
GPT2_BASE = dict(n_positions=256, n_embd=64, n_layer=3, n_head=4)
BIGCODE_BASE = dict(n_positions=256, n_embd=64, n_layer=2, n_head=4)
LLAMA_BASE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)
FAMILIES: dict[str, tuple[type[PretrainedConfig], dict]] = {
    "gpt2": (GPT2Config, GPT2_BASE),
    "gpt2_codeparrot": (
        GPT2Config,
        {**GPT2_BASE, "scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True},
    ),
    "bigcode_mqa": (GPTBigCodeConfig, {**BIGCODE_BASE, "multi_query": True}),
    "bigcode_mha": (GPTBigCodeConfig, {**BIGCODE_BASE, "multi_query": False}),
    "llama_gqa": (
        LlamaConfig,
        {
            **LLAMA_BASE,
            "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        },
    ),
    "qwen2": (
        Qwen2Config,
        {
            **LLAMA_BASE,
            "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        },
    ),
}


def training_text(max_chars: int = 30000) -> str:
    """A few KB of real Python: the sources of some standard-library modules."""
    import collections
    import dataclasses
    import textwrap

    return "\n".join(inspect.getsource(m) for m in (textwrap, dataclasses, collections))[:max_chars]


@functools.cache
def train_tokenizer() -> Tokenizer:
    return build_bpe(iter([training_text()]), TokenizerConfig(BPE_VOCAB_SIZE, min_frequency=0))


def save_tokenizer(out_dir: Path) -> PreTrainedTokenizerFast:
    """Write the tokenizer files as `python -m training tokenizer` does; return it loaded."""
    save_pretrained(train_tokenizer(), out_dir, model_max_length=2048)
    return PreTrainedTokenizerFast.from_pretrained(out_dir)


def tiny_config(family: str, vocab_size: int, eot_id: int, **overrides) -> PretrainedConfig:
    config_class, kwargs = FAMILIES[family]
    kwargs = {
        **kwargs,
        "vocab_size": vocab_size,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        # Larger than the default 0.02 so attention is far from uniform and bugs show in logits.
        "initializer_range": 0.2,
        **overrides,
    }
    return config_class(**kwargs)


def build_checkpoint(out_dir: Path, family: str = "gpt2", seed: int = 0, **overrides) -> Path:
    """Write a random `family` checkpoint with the tiny tokenizer to out_dir and return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = save_tokenizer(out_dir)
    config = tiny_config(family, len(tokenizer), tokenizer.convert_tokens_to_ids(EOT), **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    return out_dir
