"""A random checkpoint slow enough that a test can act while a long request runs.

A random 12-layer Llama without speculation (a random model's greedy text loops, which drafts
from the context would race through): ≈1.3 ms a token on a 2-core machine, so 16,000 tokens run
for many seconds however much faster the engine gets. Its head never favours a special token, so
no request ends early at an end-of-text the random weights happened to pick.
"""

from pathlib import Path

from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from tests.support.tiny_checkpoints import build_checkpoint

# Flags every server of this checkpoint needs: no speculation, room for the long request.
SLOW_SERVER_FLAGS = ("--speculative-tokens", "0", "--max-tokens-limit", "16000")
LONG = {"prompt": "import os\n", "max_tokens": 16_000, "temperature": 0}


def build_slow_checkpoint(out_dir: Path) -> Path:
    model = build_checkpoint(
        out_dir,
        "llama_gqa",
        max_position_embeddings=16_384,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=12,
    )
    never_special_tokens(model)
    return model


def never_special_tokens(model: Path) -> None:
    """Zero the head's rows of special tokens: their logit is 0, below the best of ~1000 others."""
    weights = load_file(model / "model.safetensors")
    special = Tokenizer.from_file(str(model / "tokenizer.json")).get_added_tokens_decoder()
    weights["lm_head.weight"][list(special)] = 0.0
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
