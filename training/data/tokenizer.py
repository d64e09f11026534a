"""`python -m training tokenizer`: byte-level BPE trained on the cleaned corpus.

Saved as a Hugging Face tokenizer directory (tokenizer.json, tokenizer_config.json,
special_tokens_map.json) so `transformers.AutoTokenizer` and the server load it; the special
tokens are StarCoder's names (docs/CONTRACTS.md).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from training.data.config import DataConfig, TokenizerConfig
from training.data.progress import Progress
from training.data.shards import read_shards

EOT = "<|endoftext|>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = (
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
)
FILE_SEP = "<file_sep>"
SPECIAL_TOKENS = [EOT, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, FILE_SEP]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def clean_shards(cfg: DataConfig) -> list[Path]:
    shards = sorted((cfg.out / "clean").glob("part-*.jsonl"))
    if not shards:
        raise FileNotFoundError(f"no cleaned shards in {cfg.out / 'clean'}: run `prepare` first")
    return shards


def training_texts(shards: list[Path], max_bytes: int) -> Iterator[str]:
    """The corpus in order, stopping after max_bytes so the trainer's memory stays bounded."""
    progress = Progress("tokenizer corpus")
    seen = 0
    for rec in read_shards(shards):
        if seen >= max_bytes:
            break
        seen += int(rec["size"])
        progress.update(1, int(rec["size"]))
        yield rec["content"]
    progress.close()


def build_bpe(texts: Iterator[str], cfg: TokenizerConfig) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIAL_TOKENS,  # ids 0..5, in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_pretrained(tok: Tokenizer, out_dir: Path, model_max_length: int) -> None:
    # Imported here: transformers is heavy, and pack's workers import this module for EOT.
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(out_dir))
    # transformers 5 folds the special tokens into tokenizer_config.json; the contract names
    # special_tokens_map.json too, for older loaders.
    special_map = {
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "pad_token": EOT,
        "additional_special_tokens": SPECIAL_TOKENS[1:],
    }
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))


def train_tokenizer(cfg: DataConfig) -> Path:
    """Train on OUT/clean (or copy `tokenizer.reuse_from`) into OUT/tokenizer/; returns that directory."""
    out_dir = cfg.out / "tokenizer"
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.tokenizer.reuse_from:
        for name in TOKENIZER_FILES:
            shutil.copyfile(Path(cfg.tokenizer.reuse_from) / name, out_dir / name)
        return out_dir
    texts = training_texts(clean_shards(cfg), cfg.tokenizer.max_train_bytes)
    tok = build_bpe(texts, cfg.tokenizer)
    save_pretrained(tok, out_dir, cfg.pack.seq_len)
    return out_dir
