"""Small real artifacts for the training tests: a BPE tokenizer, packed shards, a tiny model."""

import inspect
import json
import textwrap
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from training.data.config import TokenizerConfig
from training.data.tokenizer import build_bpe


def python_sources() -> list[str]:
    """Real Python files (from the standard library), ASCII so byte-level decoding is exact."""
    import argparse
    import dataclasses
    import json.decoder
    import string
    import textwrap as tw

    sources = [inspect.getsource(m) for m in (argparse, dataclasses, json.decoder, string, tw)]
    return [s.encode("ascii", "ignore").decode() for s in sources]


def make_tokenizer(texts: list[str], vocab_size: int = 512) -> Tokenizer:
    return build_bpe(iter(texts), TokenizerConfig(vocab_size, min_frequency=0))


def write_shards(
    out: Path, texts: list[str], val_texts: list[str], vocab_size: int = 512
) -> Tokenizer:
    """The files `python -m training pack` writes (see docs/CONTRACTS.md)."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(texts + val_texts, vocab_size)
    eot = tokenizer.token_to_id("<|endoftext|>")

    def stream(docs: list[str]) -> np.ndarray:
        ids: list[int] = []
        for doc in docs:
            ids.extend(tokenizer.encode(doc).ids + [eot])
        return np.asarray(ids, dtype=np.uint16)

    train, val = stream(texts), stream(val_texts)
    train.tofile(out / "train.bin")
    val.tofile(out / "val.bin")
    tokenizer.save(str(out / "tokenizer.json"))
    meta = {
        "dtype": "uint16",
        "vocab_size": tokenizer.get_vocab_size(),
        "n_tokens": {"train": len(train), "val": len(val)},
        "val_repos": ["held/out"],
        "eot_id": eot,
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return tokenizer


SAMPLE_CODE = textwrap.dedent(
    '''\
    import os


    def read_config(path, default=None):
        """Read the configuration file at path."""
        if not os.path.exists(path):
            return default
        with open(path) as f:
            return parse(f.read(), strict=True)
    '''
)
