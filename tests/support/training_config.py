"""The smallest training run the training tests start: two phases of four steps on a 2-layer
model, written as the YAML file `python -m training train` reads."""

import json
from pathlib import Path
from typing import Any

import yaml

TINY = {
    "out_dir": None,  # filled per test
    "model": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64, "dropout": 0.1},
    "train": {
        "batch_size": 4,
        "block_size": 32,
        "warmup_steps": 2,
        "learning_rate": 3e-3,
        "min_lr": 3e-4,
        "log_every": 1,
        "eval_every": 3,
        "eval_batches": 2,
        "checkpoint_every_s": 1e9,
        "checkpoint_every_steps": 1000,
    },
    "curriculum": {
        "random_fim": {"steps": 4, "fim": {"rate": 0.5}},
        "structured_fim": {"steps": 4, "fim": {"rate": 0.9, "structured_rate": 0.7}},
    },
}


def write_config(path: Path, data_dir: Path, run_dir: Path, **sections: dict[str, Any]) -> Path:
    """TINY over the packed shards in `data_dir`, its run in `run_dir`; `sections` override keys."""
    raw = json.loads(json.dumps(TINY))
    raw["out_dir"] = str(data_dir)
    raw["train"]["out_dir"] = str(run_dir)
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
