"""`python -m training pack`: tokenize the cleaned corpus in parallel into flat token shards.

Writes OUT/train.bin and OUT/val.bin (documents joined by <|endoftext|>, uint16 or uint32),
OUT/meta.json and the tokenizer files (docs/CONTRACTS.md, "Training data"). Training views each
file as fixed-length sequences of `seq_len` tokens through numpy.memmap; FIM is applied then.
The validation split holds whole repositories, so no repository is in both.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from training.data.config import DataConfig
from training.data.parallel import batched, ordered_map
from training.data.progress import Progress
from training.data.shards import read_shards
from training.data.throughput import Work
from training.data.tokenizer import EOT, TOKENIZER_FILES, clean_shards

_worker: dict = {}


def repo_rank(seed: int, repo: str) -> str:
    return hashlib.sha256(f"{seed}:{repo}".encode()).hexdigest()


def choose_val_repos(repo_bytes: Counter, fraction: float, seed: int) -> list[str]:
    """Repositories in a seeded random order, taken while they fit in `fraction` of the bytes.

    Always at least one repository, and never all of them when there are two or more.
    """
    budget = fraction * sum(repo_bytes.values())
    chosen, used = [], 0
    for repo in sorted(repo_bytes, key=lambda r: repo_rank(seed, r)):
        if len(chosen) == len(repo_bytes) - 1:
            break
        if not chosen or used + repo_bytes[repo] <= budget:
            chosen.append(repo)
            used += repo_bytes[repo]
    return sorted(chosen)


def _init_worker(tokenizer_path: str, dtype: str) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the pool is the parallelism
    tok = Tokenizer.from_file(tokenizer_path)
    _worker.update(tok=tok, eot=tok.token_to_id(EOT), dtype=np.dtype(dtype))


def _encode_batch(records: list[dict]) -> tuple[list[np.ndarray], Work]:
    """Each document's token ids followed by <|endoftext|>."""
    tok, eot, dtype = _worker["tok"], _worker["eot"], _worker["dtype"]
    work = Work()
    with work.measure("tokenize", sum(int(r["size"]) for r in records)):
        encodings = tok.encode_batch([r["content"] for r in records], add_special_tokens=False)
        arrays = [np.array([*enc.ids, eot], dtype=dtype) for enc in encodings]
    return arrays, work


def pack(cfg: DataConfig) -> dict:
    """Tokenize OUT/clean with OUT/tokenizer into OUT/{train,val}.bin + meta.json; returns meta."""
    shards = clean_shards(cfg)
    tok_dir = cfg.out / "tokenizer"
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    vocab_size = tok.get_vocab_size()
    dtype = "uint16" if vocab_size <= 65535 else "uint32"

    repo_bytes: Counter = Counter()
    for rec in read_shards(shards):
        repo_bytes[rec["repo_name"]] += int(rec["size"])
    if cfg.pack.val_repos is not None:
        val_repos = set(cfg.pack.val_repos)
        if missing := val_repos - set(repo_bytes):
            raise ValueError(f"pack.val_repos not in the cleaned corpus: {sorted(missing)}")
    else:
        val_repos = set(choose_val_repos(repo_bytes, cfg.pack.val_fraction, cfg.seed))

    n_tokens = {"train": 0, "val": 0}
    work = Work()
    progress = Progress("tokenize+pack", total_bytes=sum(repo_bytes.values()))
    ctx = mp.get_context("spawn")
    init = (str(tok_dir / "tokenizer.json"), dtype)
    with (
        ctx.Pool(cfg.num_proc, initializer=_init_worker, initargs=init) as pool,
        (cfg.out / "train.bin").open("wb") as train,
        (cfg.out / "val.bin").open("wb") as val,
    ):
        batches = batched(read_shards(shards), cfg.pack.batch_files)
        for batch, (arrays, batch_work) in ordered_map(
            pool, _encode_batch, batches, 4 * cfg.num_proc
        ):
            work.add(batch_work)
            for rec, ids in zip(batch, arrays, strict=True):
                split = "val" if rec["repo_name"] in val_repos else "train"
                (val if split == "val" else train).write(ids.tobytes())
                n_tokens[split] += len(ids)
            progress.update(len(batch), sum(int(r["size"]) for r in batch))
    progress.close()

    for name in TOKENIZER_FILES:
        shutil.copy(tok_dir / name, cfg.out / name)
    meta = {
        "dtype": dtype,
        "vocab_size": vocab_size,
        "n_tokens": n_tokens,
        "val_repos": sorted(val_repos),
        "eot_id": tok.token_to_id(EOT),
        "seq_len": cfg.pack.seq_len,
        "throughput": {**work.summary()["tokenize"], "wall_s": round(progress.elapsed, 2)},
    }
    (cfg.out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_split(out_dir: Path, split: str) -> np.memmap:
    """A packed split as a flat token array (training slices it into seq_len windows)."""
    meta = json.loads((out_dir / "meta.json").read_text())
    return np.memmap(out_dir / f"{split}.bin", dtype=meta["dtype"], mode="r")
